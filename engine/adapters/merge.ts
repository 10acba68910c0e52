// Merged export: a copy of the base model folder with a LoRA adapter folded
// into its weights, a plain Hugging Face model that needs no adapter support.
//
// For every adapted projection W [out, in] (from the base's own stored values,
// never from a quantized copy), in fp32:
//   delta[o, i] = Σ_k B[o, k] · A[k, i]      (A [r, in], B [out, r]; each partial sum rounded to fp32)
//   W'[o, i]    = W[o, i] + scale · delta[o, i]
// then W' is stored in W's own dtype (F32, or F16 / BF16 rounded to nearest,
// ties to even). This is PEFT's merge formula (W + (B @ A) · scaling) with one
// rounding to the base dtype at the end.
//
// The output keeps the input's layout exactly: the same weight files (one
// model.safetensors, or the same shards and model.safetensors.index.json),
// each file's header copied byte for byte (same tensor names, dtypes, shapes,
// offsets and metadata), so only the merged tensors' bytes differ. Every other
// tensor is copied byte for byte. config.json, generation_config.json, the
// tokenizer files and license files are copied; other files (pickle or GGUF
// weights, README.md) are not.
//
// Memory: one tensor at a time (a merged projection costs its stored bytes
// plus 4 bytes per element for fp32, plus one fp32 row of delta); other
// tensors are copied in 16 MiB chunks.
//
// Atomicity: everything is written into a hidden folder beside outDir
// (".<name>.partial-<pid>-<random>"), every file synced, then the folder is
// renamed to outDir. A killed export leaves only that hidden folder, never a
// partial outDir; the next export beside it removes leftovers whose process
// is gone.
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CancelledError, type Projection } from '../api.ts';
import { UserError } from '../model/errors.ts';
import { planModelLoad, type LoadPlan, type TensorRef } from '../model/folder.ts';
import { f16BitsToF32, f32ToF16Bits } from '../model/half.ts';
import { readSafetensorsHeader, type SafetensorsHeader } from '../model/safetensors.ts';
import { openPeftAdapter, readPeftTensor, siteKey, type PeftAdapterFiles } from './peft.ts';

export interface ExportMergedOptions {
  modelDir: string;
  adapterDir: string;
  /** Must not exist, or be an empty folder. */
  outDir: string;
  signal?: AbortSignal;
  /** After each tensor: tensors done, tensors in all, the tensor's name. */
  onProgress?: (done: number, total: number, tensor: string) => void;
}

export interface ExportMergedResult {
  outDir: string; // absolute
  tensors: number; // tensors written
  merged: number; // of which had the adapter folded in
  bytes: number; // bytes of the weight files written
}

const COPY_CHUNK = 16 << 20;
// Files copied beside the weights.
const SIDE_FILE = /^(config|generation_config|tokenizer|tokenizer_config|special_tokens_map|added_tokens|vocab|chat_template|preprocessor_config)\.(json|jinja|txt|model)$|^merges\.txt$|^(LICEN[CS]E|NOTICE|USE_POLICY)(\.[A-Za-z]+)?$/;
const INDEX_FILE = 'model.safetensors.index.json';

export async function exportMerged(opts: ExportMergedOptions): Promise<ExportMergedResult> {
  if (os.endianness() !== 'LE') throw new Error('exportMerged needs a little-endian machine');
  const out = path.resolve(opts.outDir);
  await refuseNonEmpty(out);
  const plan = await planModelLoad(opts.modelDir);
  const adapter = await openPeftAdapter(opts.adapterDir, plan.config);
  const sites = sitesByTensor(plan, adapter);
  const headers: SafetensorsHeader[] = [];
  for (const file of plan.files) headers.push(await readSafetensorsHeader(file));
  const total = headers.reduce((n, h) => n + h.tensors.size, 0);
  const sideFiles = (await readdir(plan.dir, { withFileTypes: true })).filter((e) => e.isFile() && SIDE_FILE.test(e.name)).map((e) => e.name);
  if (path.basename(plan.files[0]!) !== 'model.safetensors') sideFiles.push(INDEX_FILE);

  const parent = path.dirname(out);
  await mkdir(parent, { recursive: true });
  await removeAbandonedPartials(parent, path.basename(out));
  const temp = path.join(parent, `.${path.basename(out)}.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(temp);
  const progress = { done: 0, total, merged: 0, bytes: 0 };
  try {
    for (const header of headers) await writeMergedFile(header, path.join(temp, path.basename(header.file)), sites, adapter, opts, progress);
    for (const name of sideFiles) {
      await copyFile(path.join(plan.dir, name), path.join(temp, name));
      await syncPath(path.join(temp, name));
    }
    await syncPath(temp);
    checkAborted(opts.signal);
    await rmdir(out).catch(() => undefined); // an empty outDir (refuseNonEmpty allowed it)
    await rename(temp, out);
  } catch (e) {
    await rm(temp, { recursive: true, force: true });
    throw e;
  }
  await syncPath(parent).catch(() => undefined);
  return { outDir: out, tensors: progress.done, merged: progress.merged, bytes: progress.bytes };
}

async function refuseNonEmpty(out: string): Promise<void> {
  const info = await stat(out).catch(() => null);
  if (!info) return;
  if (!info.isDirectory()) throw new UserError(`${out} exists and is a file; choose a new folder for the merged model.`);
  const entries = await readdir(out);
  if (entries.length > 0)
    throw new UserError(`${out} already exists and is not empty (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''}); choose a new or empty folder for the merged model, so nothing is overwritten.`);
}

/** "file\0tensor name" → the adapter site whose update goes into that weight. */
function sitesByTensor(plan: LoadPlan, adapter: PeftAdapterFiles): Map<string, { layer: number; proj: Projection }> {
  const map = new Map<string, { layer: number; proj: Projection }>();
  for (const s of adapter.config.sites) {
    const L = plan.tensors.layers[s.layer]!;
    const refs: Record<Projection, TensorRef> = { q_proj: L.q, k_proj: L.k, v_proj: L.v, o_proj: L.o, gate_proj: L.gate, up_proj: L.up, down_proj: L.down };
    const ref = refs[s.proj];
    map.set(`${ref.file}\0${ref.name}`, s);
  }
  return map;
}

async function writeMergedFile(
  header: SafetensorsHeader,
  target: string,
  sites: Map<string, { layer: number; proj: Projection }>,
  adapter: PeftAdapterFiles,
  opts: ExportMergedOptions,
  progress: { done: number; total: number; merged: number; bytes: number },
): Promise<void> {
  const input = await open(header.file, 'r');
  const output = await open(target, 'wx');
  try {
    const buffer = Buffer.alloc(Math.min(COPY_CHUNK, Math.max(header.dataStart, 1)));
    await copyRange(input, output, 0, header.dataStart, buffer, opts.signal); // length + header, verbatim
    const ordered = [...header.tensors.entries()].sort((a, b) => a[1].offset - b[1].offset);
    const chunk = Buffer.alloc(COPY_CHUNK);
    for (const [name, info] of ordered) {
      checkAborted(opts.signal);
      const site = sites.get(`${header.file}\0${name}`);
      if (site) {
        const bytes = Buffer.alloc(info.byteLength);
        await readExactly(input, bytes, info.offset);
        const [rows, cols] = info.shape as [number, number];
        const A = await readPeftTensor(adapter.weightsFile, adapter.tensors.get(siteKey(site.layer, site.proj, 'A'))!);
        const B = await readPeftTensor(adapter.weightsFile, adapter.tensors.get(siteKey(site.layer, site.proj, 'B'))!);
        const merged = mergeWeight(info.dtype, bytes, rows, cols, A, B, adapter.config.rank, adapter.config.scale);
        await writeExactly(output, merged, info.offset);
        progress.merged++;
      } else {
        await copyRange(input, output, info.offset, info.byteLength, chunk, opts.signal);
      }
      progress.done++;
      opts.onProgress?.(progress.done, progress.total, name);
    }
    await output.sync();
    progress.bytes += header.fileSize;
  } finally {
    await output.close();
    await input.close();
  }
}

/**
 * W' = W + scale · (B · A) in fp32, returned in W's dtype. `bytes` holds W
 * [rows, cols] as stored (F32, F16 or BF16, little-endian); A [r, cols], B [rows, r].
 */
export function mergeWeight(dtype: string, bytes: Buffer, rows: number, cols: number, A: Float32Array, B: Float32Array, r: number, scale: number): Buffer {
  const n = rows * cols;
  const w = new Float32Array(n); // W, then W'
  const wBits = new Uint32Array(w.buffer);
  if (dtype === 'F32') w.set(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + n * 4)));
  else if (dtype === 'BF16') for (let i = 0; i < n; ++i) wBits[i] = bytes.readUInt16LE(i * 2) << 16;
  else for (let i = 0; i < n; ++i) w[i] = f16BitsToF32(bytes.readUInt16LE(i * 2));

  const delta = new Float32Array(cols); // one row of B · A
  const s = Math.fround(scale);
  for (let o = 0; o < rows; ++o) {
    delta.fill(0);
    for (let k = 0; k < r; ++k) {
      const b = B[o * r + k]!;
      if (b === 0) continue;
      const a0 = k * cols;
      for (let i = 0; i < cols; ++i) delta[i] = delta[i]! + b * A[a0 + i]!;
    }
    const w0 = o * cols;
    for (let i = 0; i < cols; ++i) w[w0 + i] = w[w0 + i]! + Math.fround(s * delta[i]!);
  }

  if (dtype === 'F32') return Buffer.from(w.buffer);
  const outBits = new Uint16Array(n);
  if (dtype === 'BF16') {
    for (let i = 0; i < n; ++i) {
      const bits = wBits[i]!;
      // round to nearest, ties to even; NaN stays a (quiet) NaN
      outBits[i] = (bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0
        ? ((bits >>> 16) | 0x40) & 0xffff
        : ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
    }
  } else {
    for (let i = 0; i < n; ++i) outBits[i] = f32ToF16Bits(w[i]!);
  }
  return Buffer.from(outBits.buffer);
}

// ---- files -----------------------------------------------------------------------

type Handle = Awaited<ReturnType<typeof open>>;

async function readExactly(handle: Handle, buffer: Buffer, position: number, length = buffer.length): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new UserError(`a model weight file ended early at byte ${position + done}; download the model again.`);
    done += bytesRead;
  }
}

async function writeExactly(handle: Handle, buffer: Buffer, position: number, length = buffer.length): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await handle.write(buffer, done, length - done, position + done);
    done += bytesWritten;
  }
}

async function copyRange(input: Handle, output: Handle, start: number, length: number, buffer: Buffer, signal?: AbortSignal): Promise<void> {
  for (let done = 0; done < length; ) {
    checkAborted(signal);
    const n = Math.min(buffer.length, length - done);
    await readExactly(input, buffer, start + done, n);
    await writeExactly(output, buffer, start + done, n);
    done += n;
  }
}

async function syncPath(p: string): Promise<void> {
  if (process.platform === 'win32' && (await stat(p)).isDirectory()) return;
  const handle = await open(p, 'r');
  try {
    await handle.sync();
  } catch {
    // folders cannot be synced on some file systems; the files themselves are
  } finally {
    await handle.close();
  }
}

function checkAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new CancelledError('exporting the merged model');
}

/** Removes ".<name>.partial-<pid>-*" folders beside outDir whose process no longer runs. */
async function removeAbandonedPartials(parent: string, name: string): Promise<void> {
  const prefix = `.${name}.partial-`;
  for (const entry of await readdir(parent)) {
    if (!entry.startsWith(prefix)) continue;
    const pid = Number(entry.slice(prefix.length).split('-')[0]);
    if (!Number.isInteger(pid) || isAlive(pid)) continue;
    await rm(path.join(parent, entry), { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
