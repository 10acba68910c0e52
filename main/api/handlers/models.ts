// The base-model calls: the models the app knows (folders the user added, and
// what the Hugging Face cache holds), suggestions, and hub downloads into
// <appData>/models with progress on the 'download' channel. A finished
// download is recorded in the library's catalogue, like an added folder.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { cpuDevice } from '../../../engine/estimate/device.ts';
import { fitSettings } from '../../../engine/estimate/fit.ts';
import { MODEL_PRESETS, type ModelPresetName } from '../../../engine/model/presets.ts';
import { UserError } from '../../../engine/model/errors.ts';
import type { Library } from '../../library/library.ts';
import { scanHfCache } from '../../models/hf-cache.ts';
import { DownloadCancelledError, downloadModel } from '../../models/hub.ts';
import type { ApiHandlers, Download, ModelEntry } from '../contract.ts';
import type { ApiEvents } from '../events.ts';

export type ModelHandlers = Pick<ApiHandlers, 'models.list' | 'models.addFolder' | 'models.suggested' | 'models.startDownload' | 'models.cancelDownload' | 'models.downloads'>;

export interface ModelHandlerOptions {
  library: Library;
  events: ApiEvents;
  appDataDir: string;
  hfCacheDir?: string | undefined;
  hubEndpoint?: string | undefined;
}

// Small instruct models the engine trains, smallest first; parameters as published.
const SUGGESTED: ReadonlyArray<{ repo: string; preset: ModelPresetName; parameters: number; why: string }> = [
  { repo: 'HuggingFaceTB/SmolLM2-135M-Instruct', preset: 'SmolLM2-135M', parameters: 135e6, why: 'Tiny and quick: a first run in minutes, even on a laptop CPU.' },
  { repo: 'HuggingFaceTB/SmolLM2-360M-Instruct', preset: 'SmolLM2-360M', parameters: 362e6, why: 'Small, still quick, noticeably better answers than 135M.' },
  { repo: 'meta-llama/Llama-3.2-1B-Instruct', preset: 'Llama-3.2-1B', parameters: 1.24e9, why: 'A capable 1B chat model (gated: accept the licence on Hugging Face first).' },
  { repo: 'HuggingFaceTB/SmolLM2-1.7B-Instruct', preset: 'SmolLM2-1.7B', parameters: 1.71e9, why: 'The largest SmolLM2: good quality when the machine has the memory.' },
  { repo: 'meta-llama/Llama-3.2-3B-Instruct', preset: 'Llama-3.2-3B', parameters: 3.21e9, why: 'Stronger answers; wants a GPU or a lot of memory (gated).' },
];

export function modelHandlers(opts: ModelHandlerOptions): ModelHandlers {
  const { library, events } = opts;
  const downloadsDir = path.join(opts.appDataDir, 'models');
  const downloads = new Map<string, { state: Download; abort: AbortController }>();

  const update = (id: string, change: Partial<Download>) => {
    const d = downloads.get(id);
    if (!d) return;
    d.state = { ...d.state, ...change };
    events.emit('download', { ...d.state });
  };

  const list = async (): Promise<ModelEntry[]> => {
    const entries = new Map<string, ModelEntry>();
    for (const m of library.catalog.listBaseModels()) {
      const present = existsSync(m.path);
      entries.set(m.path, {
        id: m.path, name: m.name, path: m.path, source: m.path.startsWith(downloadsDir + path.sep) ? 'download' : 'folder', repo: null,
        arch: m.architecture, parameters: m.parameterCount, sizeBytes: m.weightBytes, usable: present,
        problem: present ? null : `The folder ${m.path} is gone; add the model again where it is now.`,
      });
    }
    const scan = await scanHfCache(opts.hfCacheDir ? { cacheDir: opts.hfCacheDir } : {});
    for (const c of scan.models) {
      if (entries.has(c.model.path)) continue;
      entries.set(c.model.path, {
        id: c.model.path, name: c.repo, path: c.model.path, source: 'hf-cache', repo: c.repo, arch: c.model.architecture,
        parameters: c.model.parameterCount, sizeBytes: c.model.weightBytes, usable: true, problem: null,
      });
    }
    for (const p of scan.problems) {
      if (entries.has(p.path)) continue;
      entries.set(p.path, { id: p.path, name: p.repo, path: p.path, source: 'hf-cache', repo: p.repo, arch: null, parameters: null, sizeBytes: 0, usable: false, problem: p.message });
    }
    return [...entries.values()];
  };

  const run = async (id: string, repo: string, revision: string, signal: AbortSignal) => {
    try {
      update(id, { status: 'downloading' });
      const result = await downloadModel({
        repo, revision, dest: downloadsDir, signal, progressIntervalMs: 250,
        ...(opts.hubEndpoint ? { endpoint: opts.hubEndpoint } : {}),
        onProgress: (p) => update(id, { file: p.file, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal }),
      });
      update(id, { status: 'verifying', file: null });
      await library.catalog.addBaseModel(result.dir);
      update(id, { status: 'done', path: result.dir });
    } catch (err) {
      if (err instanceof DownloadCancelledError || signal.aborted) update(id, { status: 'cancelled', file: null });
      else update(id, { status: 'failed', file: null, error: err instanceof UserError ? err.message : `The download failed: ${(err as Error).message}` });
    }
  };

  return {
    'models.list': list,
    'models.addFolder': async ({ path: folder }) => {
      const m = await library.catalog.addBaseModel(path.resolve(folder));
      return { id: m.path, name: m.name, path: m.path, source: 'folder', repo: null, arch: m.architecture, parameters: m.parameterCount, sizeBytes: m.weightBytes, usable: true, problem: null };
    },
    'models.suggested': async () => {
      const local = new Set((await list()).filter((m) => m.usable && m.repo).map((m) => m.repo));
      const device = cpuDevice();
      return SUGGESTED.map((s) => {
        const shape = { name: s.preset, config: MODEL_PRESETS[s.preset], source: 'preset' as const, dir: null };
        return {
          repo: s.repo, name: s.repo.split('/')[1] ?? s.repo, parameters: s.parameters, downloadBytes: Math.round(s.parameters * 2), why: s.why,
          fitsLora: fitSettings(shape, device, { method: 'lora' }).found,
          fitsQlora: fitSettings(shape, device, { method: 'qlora' }).found,
          local: local.has(s.repo),
        };
      });
    },
    'models.startDownload': ({ repo, revision = 'main' }) => {
      const busy = [...downloads.values()].find((d) => d.state.repo === repo && ['queued', 'downloading', 'verifying'].includes(d.state.status));
      if (busy) return { ...busy.state };
      const downloadId = randomBytes(8).toString('hex');
      const state: Download = { downloadId, repo, revision, status: 'queued', file: null, bytesDone: 0, bytesTotal: null, path: null, error: null };
      const abort = new AbortController();
      downloads.set(downloadId, { state, abort });
      void run(downloadId, repo, revision, abort.signal);
      return { ...state };
    },
    'models.cancelDownload': ({ downloadId }) => {
      const d = downloads.get(downloadId);
      if (!d) throw new UserError(`There is no download ${downloadId}; refresh the list of downloads.`);
      d.abort.abort();
      return { ...d.state };
    },
    'models.downloads': () => [...downloads.values()].map((d) => ({ ...d.state })),
  };
}
