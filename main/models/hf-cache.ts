// The Hugging Face cache: models that transformers or huggingface_hub already
// downloaded, found without copying them. Layout (huggingface_hub):
//
//   <cache>/models--<org>--<name>/
//     blobs/<etag>                 file contents (<etag>.incomplete while downloading)
//     refs/main                    the commit the branch points at (text)
//     snapshots/<commit>/<file>    symlinks into ../../blobs (real files on
//                                  Windows without symlink rights)
//
// Cache folder: HF_HUB_CACHE (or the older HUGGINGFACE_HUB_CACHE), else
// HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
//
// A snapshot is usable when the engine can load it (config.json of a supported
// architecture + safetensors weights, planModelLoad). Everything else (broken
// links, downloads in progress, pickle-only or unsupported models) is reported
// as a problem with the reason, never thrown: one bad entry must not hide the rest.
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ModelLoadError, UserError } from '../../engine/model/errors.ts';
import { describeLocalModel, type LocalModel } from './local.ts';

export interface CachedModel {
  repo: string; // org/name
  commit: string; // the snapshot folder's name
  refs: string[]; // branches/tags that point at this commit ('main', ...)
  model: LocalModel;
}

export interface CacheProblem {
  repo: string;
  path: string; // the snapshot (or repo) folder at fault
  kind: 'incomplete' | 'unsupported';
  message: string;
}

export interface CacheScan {
  cacheDir: string;
  exists: boolean;
  models: CachedModel[]; // sorted by repo, then the snapshot refs point at first
  problems: CacheProblem[];
}

export interface ScanOptions {
  cacheDir?: string; // default: hfCacheDir()
  env?: NodeJS.ProcessEnv; // default process.env
  /** Compute the shelf fingerprint of each model (default false: reads ~200 KiB per weight file). */
  fingerprint?: boolean;
}

/** The hub cache folder the Hugging Face libraries use with this environment. */
export function hfCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const set = (v: string | undefined) => (v && v.trim() ? v : null);
  const direct = set(env['HF_HUB_CACHE']) ?? set(env['HUGGINGFACE_HUB_CACHE']);
  if (direct) return path.resolve(expandHome(direct));
  const home = set(env['HF_HOME']);
  if (home) return path.resolve(expandHome(home), 'hub');
  const xdg = set(env['XDG_CACHE_HOME']);
  if (xdg) return path.resolve(expandHome(xdg), 'huggingface', 'hub');
  return path.join(os.homedir(), '.cache', 'huggingface', 'hub');
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

/** "models--org--name" → "org/name" (null for datasets, spaces and other folders). */
export function repoFromCacheFolder(folder: string): string | null {
  const m = /^models--(.+)$/.exec(folder);
  if (!m) return null;
  const parts = m[1]!.split('--');
  return parts.length >= 2 ? `${parts[0]}/${parts.slice(1).join('--')}` : parts[0]!;
}

export async function scanHfCache(opts: ScanOptions = {}): Promise<CacheScan> {
  const cacheDir = path.resolve(opts.cacheDir ?? hfCacheDir(opts.env));
  const top = await readdir(cacheDir).catch(() => null);
  if (!top) return { cacheDir, exists: false, models: [], problems: [] };
  const models: CachedModel[] = [];
  const problems: CacheProblem[] = [];
  for (const folder of top.sort()) {
    const repo = repoFromCacheFolder(folder);
    if (!repo) continue;
    const repoDir = path.join(cacheDir, folder);
    const refs = await readRefs(repoDir);
    const snapshots = await readdir(path.join(repoDir, 'snapshots')).catch(() => [] as string[]);
    if (snapshots.length === 0) {
      problems.push({ repo, path: repoDir, kind: 'incomplete', message: `${repo}: no snapshot in the cache (the download did not finish). Download it again.` });
      continue;
    }
    const found: CachedModel[] = [];
    for (const commit of snapshots.sort()) {
      const dir = path.join(repoDir, 'snapshots', commit);
      const problem = await snapshotProblem(repo, repoDir, dir);
      if (problem) {
        problems.push(problem);
        continue;
      }
      try {
        const model = await describeLocalModel(dir, { name: repo, fingerprint: opts.fingerprint ?? false });
        found.push({ repo, commit, refs: refs.filter((r) => r.commit === commit).map((r) => r.name), model });
      } catch (err) {
        if (!(err instanceof UserError)) throw err;
        // config.json refusals (architecture, activation, RoPE type) and weight dtypes: the model is
        // not one the engine trains; anything else (missing tensors, shards): the files are incomplete.
        const file = err instanceof ModelLoadError ? err.file : undefined;
        const unsupported = (file !== undefined && path.basename(file) === 'config.json') || /not supported|pickle|GGUF/i.test(err.message);
        problems.push({ repo, path: dir, kind: unsupported ? 'unsupported' : 'incomplete', message: err.message });
      }
    }
    found.sort((a, b) => Number(b.refs.length > 0) - Number(a.refs.length > 0) || a.commit.localeCompare(b.commit));
    models.push(...found);
  }
  return { cacheDir, exists: true, models, problems };
}

async function readRefs(repoDir: string): Promise<{ name: string; commit: string }[]> {
  const refsDir = path.join(repoDir, 'refs');
  const out: { name: string; commit: string }[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full, `${prefix}${entry.name}/`);
      else {
        const commit = (await readFile(full, 'utf8').catch(() => '')).trim();
        if (commit) out.push({ name: prefix + entry.name, commit });
      }
    }
  };
  await walk(refsDir, '');
  return out;
}

// What keeps a snapshot from loading before the engine looks at it: broken
// links, blobs still downloading, no config.json or no safetensors at all.
async function snapshotProblem(repo: string, repoDir: string, dir: string): Promise<CacheProblem | null> {
  const entries = await readdir(dir).catch(() => null);
  if (!entries) return { repo, path: dir, kind: 'incomplete', message: `${repo}: the snapshot ${path.basename(dir)} cannot be read.` };
  const broken: string[] = [];
  for (const name of entries) {
    const link = await lstat(path.join(dir, name)).catch(() => null);
    if (link?.isSymbolicLink() && !(await stat(path.join(dir, name)).catch(() => null))) broken.push(name);
  }
  const downloading = (await readdir(path.join(repoDir, 'blobs')).catch(() => [] as string[])).filter((b) => b.endsWith('.incomplete'));
  if (broken.length > 0) {
    return {
      repo,
      path: dir,
      kind: 'incomplete',
      message:
        `${repo}: ${broken.slice(0, 3).join(', ')}${broken.length > 3 ? ` and ${broken.length - 3} more` : ''} ` +
        `${broken.length === 1 ? 'points' : 'point'} at a file missing from the cache` +
        (downloading.length ? ' (a download is in progress or was interrupted)' : '') +
        '. Download the model again.',
    };
  }
  if (!entries.includes('config.json')) {
    return { repo, path: dir, kind: 'incomplete', message: `${repo}: the snapshot ${path.basename(dir)} has no config.json${downloading.length ? ' (a download is in progress or was interrupted)' : ''}.` };
  }
  if (!entries.some((n) => n.endsWith('.safetensors'))) {
    const pickles = entries.filter((n) => /\.(bin|pt|pth)$/.test(n));
    return pickles.length > 0
      ? { repo, path: dir, kind: 'unsupported', message: `${repo}: only PyTorch pickle weights (${pickles[0]}); LoRA Studio never opens those because loading them can run code. Download its safetensors version.` }
      : { repo, path: dir, kind: 'incomplete', message: `${repo}: the snapshot ${path.basename(dir)} has no safetensors weights yet${downloading.length ? ' (a download is in progress or was interrupted)' : ''}.` };
  }
  return null;
}
