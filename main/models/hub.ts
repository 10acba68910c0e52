// Downloads a model repository from the Hugging Face hub into
// <dest>/<org>--<name>/, the way the hub serves it:
//
//   GET  {endpoint}/api/models/{repo}/revision/{rev}?blobs=true
//        → { sha, siblings: [{ rfilename, size, blobId, lfs?: { sha256, size } }] }
//   GET  {endpoint}/{repo}/resolve/{rev}/{file}
//        → the file, or (large LFS files) a redirect to a CDN that serves it;
//          `Range: bytes=N-` continues a partial file (206 Partial Content).
//   HEAD {endpoint}/{repo}/resolve/{rev}/{file}   (only for a file the listing
//        gives no size for) → X-Linked-Size / X-Linked-Etag (LFS: the sha256)
//        or Content-Length / ETag (a plain git file: its git blob sha1).
//
// Only what the engine reads is fetched: root-level model(-0000i-of-0000N)
// .safetensors, *.json and tokenizer files. Pickle weights (*.bin, *.pt) are
// never downloaded: unpickling runs code.
//
// Each file is written to <file>.partial, checked (LFS files: sha256 of the
// content against the hub's; plain git files: the git blob sha1 of the content
// against the listing's blobId) and only then renamed into place. A dropped
// connection is retried with a Range request from the bytes already written;
// a cancelled or failed download keeps its .partial files, and the next
// download of the same repo continues them. A checksum mismatch removes the
// file and refuses the download.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { syncFolder, writeFileAtomic } from '../../engine/model/atomic.ts';
import { UserError } from '../../engine/model/errors.ts';

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';
/** Tries per file after a dropped connection, before the download fails (its .partial kept). */
export const FILE_ATTEMPTS = 5;
/** Written into the model folder once every file is in place. */
export const DOWNLOAD_RECORD = '.lora-studio-download.json';

export interface HubDownloadOptions {
  repo: string; // "org/name"
  revision?: string; // branch, tag or commit; default 'main'
  dest: string; // folder that receives <org>--<name>/
  endpoint?: string; // default https://huggingface.co
  token?: string; // sent as Authorization: Bearer <token>
  signal?: AbortSignal;
  onProgress?: (progress: DownloadProgress) => void;
  /** Minimum milliseconds between progress events within one file (default 250); a file's end always reports. */
  progressIntervalMs?: number;
}

export interface DownloadProgress {
  repo: string;
  file: string; // repo-relative name of the file being fetched
  fileBytesDone: number;
  fileBytesTotal: number;
  bytesDone: number; // all files, including ones already on disk
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  bytesPerSecond: number; // bytes received over the network / seconds since this download started
}

export interface HubFile {
  name: string; // repo-relative
  size: number; // bytes
  sha256: string | null; // LFS files
  gitSha1: string | null; // plain git files: git blob id
}

export interface DownloadResult {
  repo: string;
  revision: string; // as asked
  commit: string | null; // the commit the hub resolved it to
  dir: string; // absolute <dest>/<org>--<name>
  files: HubFile[];
  bytesDownloaded: number; // received over the network in this call
}

/** The download was cancelled through its AbortSignal; the .partial files are kept. */
export class DownloadCancelledError extends UserError {}

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const WEIGHTS = /^model(-\d+-of-\d+)?\.safetensors$/;
const TOKENIZER_FILES = new Set(['tokenizer.model', 'merges.txt', 'vocab.txt']);

/** Whether a repo file is one the app downloads (root level; safetensors weights, JSON, tokenizer files). */
export function isWantedFile(name: string): boolean {
  if (name.includes('/')) return false;
  return WEIGHTS.test(name) || name.endsWith('.json') || TOKENIZER_FILES.has(name) || name.endsWith('.tiktoken');
}

/** The folder a repo downloads into: <dest>/<org>--<name>. */
export function modelFolderFor(dest: string, repo: string): string {
  return path.join(path.resolve(dest), repo.replace('/', '--'));
}

export async function downloadModel(opts: HubDownloadOptions): Promise<DownloadResult> {
  const repo = opts.repo.trim();
  if (!REPO_ID.test(repo)) {
    throw new UserError(`'${opts.repo}' is not a Hugging Face model id. Give it as organisation/name, for example Qwen/Qwen2.5-0.5B-Instruct.`);
  }
  const revision = opts.revision ?? 'main';
  const hub = new HubClient(opts.endpoint ?? DEFAULT_HUB_ENDPOINT, repo, revision, opts.token, opts.signal);
  const listing = await hub.listFiles();
  const files = listing.files.filter((f) => isWantedFile(f.name));
  if (!files.some((f) => WEIGHTS.test(f.name))) {
    const pickles = listing.files.filter((f) => /\.(bin|pt|pth|ckpt)$/i.test(f.name)).map((f) => f.name);
    throw new UserError(
      `${repo} has no safetensors weights (model.safetensors or model-0000i-of-0000N.safetensors)` +
        (pickles.length ? `, only PyTorch pickle files (${pickles.slice(0, 3).join(', ')}), which LoRA Studio never opens because loading them can run code` : '') +
        '. Choose a repository that publishes safetensors weights.',
    );
  }
  for (const file of files) {
    if (file.size < 0 || !Number.isFinite(file.size)) Object.assign(file, await hub.headFile(file.name));
  }

  const dir = modelFolderFor(opts.dest, repo);
  await mkdir(dir, { recursive: true });
  const bytesTotal = files.reduce((sum, f) => sum + f.size, 0);
  await checkDiskSpace(dir, files, repo);
  const state = { bytesDone: 0, received: 0, filesDone: 0, started: Date.now() };
  // While a file is fetched, state counts only the files before it.
  const report = (file: HubFile, fileBytesDone: number) =>
    opts.onProgress?.({
      repo,
      file: file.name,
      fileBytesDone,
      fileBytesTotal: file.size,
      bytesDone: state.bytesDone + fileBytesDone,
      bytesTotal,
      filesDone: state.filesDone,
      filesTotal: files.length,
      bytesPerSecond: state.received / Math.max(0.001, (Date.now() - state.started) / 1000),
    });

  for (const file of files) {
    const target = path.join(dir, file.name);
    const existing = await stat(target).catch(() => null);
    if (!existing || existing.size !== file.size) {
      await fetchFile(hub, file, target, opts, report, (n) => (state.received += n));
    }
    state.filesDone += 1;
    report(file, file.size);
    state.bytesDone += file.size;
  }
  await syncFolder(dir);
  const result: DownloadResult = { repo, revision, commit: listing.commit, dir, files, bytesDownloaded: state.received };
  const record = { repo, revision, commit: listing.commit, endpoint: hub.endpoint, files, completedAt: new Date().toISOString() };
  await writeFileAtomic(path.join(dir, DOWNLOAD_RECORD), [Buffer.from(JSON.stringify(record, null, 2) + '\n')]);
  return result;
}

// Refuses before fetching anything when the files still to fetch cannot fit
// on the disk (what is already there, whole or partial, is counted as done).
async function checkDiskSpace(dir: string, files: readonly HubFile[], repo: string): Promise<void> {
  let needed = 0;
  for (const file of files) {
    const target = path.join(dir, file.name);
    const whole = await stat(target).catch(() => null);
    if (whole?.size === file.size) continue;
    const partial = await stat(`${target}.partial`).catch(() => null);
    needed += file.size - Math.min(partial?.size ?? 0, file.size);
  }
  const fs = await statfs(dir).catch(() => null);
  if (!fs) return; // the file system cannot say; a full disk then fails the write with its own message
  const free = Number(fs.bavail) * Number(fs.bsize);
  if (needed > free) {
    const gb = (n: number) => `${(n / 1e9).toFixed(1)} GB`;
    throw new UserError(`${repo} needs ${gb(needed)} more on the disk of ${dir}, which has ${gb(free)} free. Free some space, or choose a models folder on another disk.`);
  }
}

// --- one file -----------------------------------------------------------------

async function fetchFile(
  hub: HubClient,
  file: HubFile,
  target: string,
  opts: HubDownloadOptions,
  report: (file: HubFile, done: number) => void,
  received: (bytes: number) => void,
): Promise<void> {
  const partial = `${target}.partial`;
  const checker = new ContentCheck(file);
  let done = 0;
  const before = await stat(partial).catch(() => null);
  if (before && before.size <= file.size) {
    // Continue what an earlier download left: the hash must see those bytes too.
    for await (const chunk of createReadStream(partial)) checker.update(chunk as Buffer);
    done = before.size;
  }
  const handle = await open(partial, done > 0 ? 'r+' : 'w');
  const interval = opts.progressIntervalMs ?? 250;
  try {
    await handle.truncate(done);
    let lastReport = 0;
    for (let attempt = 1; done < file.size; attempt++) {
      try {
        const response = await hub.openFile(file.name, done);
        if (done > 0 && response.status !== 206) {
          // The server ignored the Range: start over.
          done = 0;
          checker.reset();
          await handle.truncate(0);
        }
        if (!response.body) throw new Error('the response has no body');
        for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
          if (done + chunk.byteLength > file.size) throw mismatch(hub.repo, file, `more than the ${file.size} bytes the hub lists`, partial);
          await writeAll(handle, chunk, done);
          checker.update(chunk);
          done += chunk.byteLength;
          received(chunk.byteLength);
          if (Date.now() - lastReport >= interval) {
            lastReport = Date.now();
            report(file, done);
          }
        }
        if (done < file.size && attempt >= FILE_ATTEMPTS) throw new Error(`the connection closed after ${done} of ${file.size} bytes`);
      } catch (err) {
        if (opts.signal?.aborted) throw cancelled(hub.repo);
        if (err instanceof UserError || attempt >= FILE_ATTEMPTS) throw asNetworkError(err, hub, file.name);
        // A dropped connection: try again from `done`, after a short pause.
        await pause(200 * attempt, opts.signal).catch(() => {
          throw cancelled(hub.repo);
        });
      }
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  const problem = checker.problem();
  if (problem) {
    await unlink(partial).catch(() => undefined);
    throw mismatch(hub.repo, file, problem, partial);
  }
  await rename(partial, target);
}

async function writeAll(handle: FileHandle, chunk: Uint8Array, position: number): Promise<void> {
  let written = 0;
  while (written < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, written, chunk.byteLength - written, position + written);
    written += bytesWritten;
  }
}

// sha256 of an LFS file's content, or the git blob sha1 ("blob <size>\0" + content) of a plain file.
class ContentCheck {
  private hash: Hash;
  constructor(private readonly file: HubFile) {
    this.hash = this.fresh();
  }
  private fresh(): Hash {
    if (this.file.sha256) return createHash('sha256');
    const hash = createHash('sha1');
    hash.update(`blob ${this.file.size}\0`);
    return hash;
  }
  reset(): void {
    this.hash = this.fresh();
  }
  update(bytes: Uint8Array): void {
    this.hash.update(bytes);
  }
  /** null when the content matches what the hub lists, else what differs. */
  problem(): string | null {
    const expected = this.file.sha256 ?? this.file.gitSha1;
    if (!expected) return null; // the hub gave no checksum for this file
    const got = this.hash.digest('hex');
    return got === expected.toLowerCase() ? null : `${this.file.sha256 ? 'sha256' : 'git blob sha1'} ${got}, expected ${expected}`;
  }
}

function mismatch(repo: string, file: HubFile, what: string, partial: string): UserError {
  void unlink(partial).catch(() => undefined);
  return new UserError(
    `${file.name} of ${repo} did not match the hub's checksum (${what}). The damaged file was removed; ` +
      'download again (a proxy or an unstable connection can corrupt downloads).',
  );
}

function cancelled(repo: string): DownloadCancelledError {
  return new DownloadCancelledError(`The download of ${repo} was cancelled. The files fetched so far are kept; downloading again continues them.`);
}

function asNetworkError(err: unknown, hub: HubClient, file: string): Error {
  if (err instanceof UserError) return err;
  return new UserError(
    `Downloading ${file} of ${hub.repo} from ${hub.endpoint} failed after ${FILE_ATTEMPTS} tries (${describe(err)}). ` +
      'Check the internet connection and download again: the part already fetched is kept and continued.',
  );
}

function describe(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string; code?: string } };
  return [e.message, e.cause?.code ?? e.cause?.message].filter(Boolean).join(': ') || String(err);
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// --- the hub's HTTP API ---------------------------------------------------------

class HubClient {
  readonly endpoint: string;
  constructor(
    endpoint: string,
    readonly repo: string,
    readonly revision: string,
    private readonly token: string | undefined,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.endpoint = endpoint.replace(/\/+$/, '');
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.token ? { ...extra, authorization: `Bearer ${this.token}` } : extra;
  }

  private async request(url: string, init: RequestInit): Promise<Response> {
    if (this.signal?.aborted) throw cancelled(this.repo);
    try {
      return await fetch(url, { ...init, signal: this.signal });
    } catch (err) {
      if (this.signal?.aborted) throw cancelled(this.repo);
      throw new UserError(`Cannot reach ${this.endpoint} (${describe(err)}). Check the internet connection, or the proxy settings.`);
    }
  }

  async listFiles(): Promise<{ commit: string | null; files: HubFile[] }> {
    const url = `${this.endpoint}/api/models/${this.repo}/revision/${encodeURIComponent(this.revision)}?blobs=true`;
    const response = await this.request(url, { headers: this.headers({ accept: 'application/json' }) });
    if (!response.ok) throw await this.refusal(response, 'list the files of');
    let body: unknown;
    try {
      body = await response.json();
    } catch {
      throw new UserError(`${this.endpoint} answered the file listing of ${this.repo} with something that is not JSON. Check the hub address.`);
    }
    const siblings = (body as { siblings?: unknown }).siblings;
    if (!Array.isArray(siblings)) throw new UserError(`${this.endpoint} listed no files for ${this.repo} (no "siblings"). Check the hub address.`);
    const files: HubFile[] = [];
    for (const s of siblings as Record<string, unknown>[]) {
      if (typeof s?.['rfilename'] !== 'string') continue;
      const lfs = s['lfs'] as { sha256?: unknown; size?: unknown } | undefined;
      const lfsSize = typeof lfs?.size === 'number' ? lfs.size : null;
      const size = lfsSize ?? (typeof s['size'] === 'number' ? s['size'] : -1);
      files.push({
        name: s['rfilename'],
        size,
        sha256: typeof lfs?.sha256 === 'string' ? lfs.sha256 : null,
        gitSha1: !lfs && typeof s['blobId'] === 'string' ? s['blobId'] : null,
      });
    }
    const sha = (body as { sha?: unknown }).sha;
    return { commit: typeof sha === 'string' ? sha : null, files };
  }

  private fileUrl(name: string): string {
    return `${this.endpoint}/${this.repo}/resolve/${encodeURIComponent(this.revision)}/${name.split('/').map(encodeURIComponent).join('/')}`;
  }

  /** Size and checksum of a file the listing gave no size for, from the resolve URL's headers. */
  async headFile(name: string): Promise<Pick<HubFile, 'size' | 'sha256' | 'gitSha1'>> {
    const response = await this.request(this.fileUrl(name), { method: 'HEAD', redirect: 'manual', headers: this.headers() });
    if (response.status >= 400) throw await this.refusal(response, `read ${name} of`);
    const unquote = (v: string | null) => (v ? v.replace(/^W\//, '').replace(/"/g, '') : null);
    const linkedSize = response.headers.get('x-linked-size');
    const linkedEtag = unquote(response.headers.get('x-linked-etag'));
    if (linkedSize !== null && linkedEtag && /^[0-9a-f]{64}$/i.test(linkedEtag)) {
      return { size: Number(linkedSize), sha256: linkedEtag, gitSha1: null };
    }
    const length = response.headers.get('content-length');
    const etag = unquote(response.headers.get('etag'));
    if (length === null || !/^\d+$/.test(length)) throw new UserError(`${this.endpoint} gives no size for ${name} of ${this.repo}; cannot download it safely.`);
    return { size: Number(length), sha256: null, gitSha1: etag && /^[0-9a-f]{40}$/i.test(etag) ? etag : null };
  }

  /** GET of the file from `from` bytes on, redirects followed. 200 or 206; anything else is refused. */
  async openFile(name: string, from: number): Promise<Response> {
    const headers = this.headers(from > 0 ? { range: `bytes=${from}-` } : {});
    const response = await this.request(this.fileUrl(name), { headers, redirect: 'follow' });
    if (response.status === 200 || response.status === 206) return response;
    await response.body?.cancel().catch(() => undefined);
    if (response.status === 416) {
      // Already complete on disk, or the partial is longer than the file: start again.
      const again = await this.request(this.fileUrl(name), { headers: this.headers(), redirect: 'follow' });
      if (again.status === 200) return again;
      throw await this.refusal(again, `download ${name} of`);
    }
    throw await this.refusal(response, `download ${name} of`);
  }

  // A refused request → UserError saying what to do.
  private async refusal(response: Response, doing: string): Promise<UserError> {
    const text = await response.text().catch(() => '');
    const detail = (() => {
      try {
        const json = JSON.parse(text) as { error?: unknown };
        return typeof json.error === 'string' ? json.error : '';
      } catch {
        return text.slice(0, 200);
      }
    })();
    const page = `${this.endpoint}/${this.repo}`;
    const code = response.headers.get('x-error-code');
    const because = detail ? ` The hub said: ${detail}` : '';
    if (response.status === 401) {
      if (!this.token) {
        return new UserError(
          `${this.repo} is gated or private: the hub needs a Hugging Face access token to ${doing} it. Accept the model's licence at ${page}, ` +
            'create a read token in your Hugging Face settings (Access Tokens), and give it as the hub token.' + because,
        );
      }
      return new UserError(`The hub refused the access token for ${this.repo} (401${code ? `, ${code}` : ''}). Check the token is valid and has read access.` + because);
    }
    if (response.status === 403) {
      return new UserError(
        `Your token has no access to ${this.repo} (403). Accept the model's licence at ${page} with the account the token belongs to, ` +
          'or create a token with read access to gated repositories.' + because,
      );
    }
    if (response.status === 404) {
      return new UserError(`${this.repo} (revision ${this.revision}) is not on ${this.endpoint}. Check the model id and revision spelling.` + because);
    }
    return new UserError(`${this.endpoint} answered ${response.status} when asked to ${doing} ${this.repo}. Try again later.` + because);
  }
}
