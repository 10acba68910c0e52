// The base-model calls: the models the app knows (folders the user added, and
// what the Hugging Face cache holds), suggestions, and hub downloads into
// <appData>/models with progress (bytes, speed) on the 'download' channel. A
// gated repo takes a hub token, used for that download only. A finished
// download is recorded in the library's catalogue, like an added folder.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../../../engine/model/errors.ts';
import type { Library } from '../../library/library.ts';
import { scanHfCache } from '../../models/hf-cache.ts';
import { DownloadCancelledError, downloadModel } from '../../models/hub.ts';
import { suggestFor } from '../../models/suggested.ts';
import type { SystemInfo } from '../../system/system.ts';
import type { ApiHandlers, Download, ModelEntry } from '../contract.ts';
import type { ApiEvents } from '../events.ts';

export type ModelHandlers = Pick<ApiHandlers, 'models.list' | 'models.addFolder' | 'models.suggested' | 'models.startDownload' | 'models.cancelDownload' | 'models.downloads'>;

export interface ModelHandlerOptions {
  library: Library;
  events: ApiEvents;
  appDataDir: string;
  hfCacheDir?: string | undefined;
  hubEndpoint?: string | undefined;
  /** This machine (main/system), for which suggestions fit. */
  system: () => Promise<SystemInfo>;
}

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

  // The token lives in this call's closure only: not in the Download state (sent to the renderer), the library or any log.
  const run = async (id: string, repo: string, revision: string, token: string | undefined, signal: AbortSignal) => {
    try {
      update(id, { status: 'downloading' });
      const result = await downloadModel({
        repo, revision, dest: downloadsDir, signal, progressIntervalMs: 250,
        ...(opts.hubEndpoint ? { endpoint: opts.hubEndpoint } : {}),
        ...(token ? { token } : {}),
        onProgress: (p) => update(id, { file: p.file, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, bytesPerSecond: p.bytesPerSecond }),
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
      const info = await opts.system();
      return suggestFor(info).map((s) => ({
        repo: s.model.repo, name: s.model.name, parameters: s.model.parameterCount, downloadBytes: s.model.downloadBytes, why: s.model.note,
        fitsLora: s.fitsLora, fitsQlora: s.fitsQlora, local: local.has(s.model.repo), licence: s.model.licence, gated: s.model.gated, reason: s.reason,
      }));
    },
    'models.startDownload': ({ repo, revision = 'main', token }) => {
      const busy = [...downloads.values()].find((d) => d.state.repo === repo && ['queued', 'downloading', 'verifying'].includes(d.state.status));
      if (busy) return { ...busy.state };
      const downloadId = randomBytes(8).toString('hex');
      const state: Download = { downloadId, repo, revision, status: 'queued', file: null, bytesDone: 0, bytesTotal: null, bytesPerSecond: null, path: null, error: null };
      const abort = new AbortController();
      downloads.set(downloadId, { state, abort });
      void run(downloadId, repo, revision, token, abort.signal);
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
