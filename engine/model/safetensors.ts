// Safetensors files: read the header (never the tensor data) and write files.
//
// Layout (https://github.com/huggingface/safetensors):
//   bytes [0, 8)        N, the header length, unsigned 64-bit little-endian
//   bytes [8, 8+N)      header: UTF-8 JSON object
//                         { "__metadata__"?: {string: string},
//                           "<tensor name>": { "dtype": "BF16", "shape": [rows, cols],
//                                              "data_offsets": [begin, end] }, ... }
//   bytes [8+N, EOF)    data section; data_offsets are relative to its start
//
// The reader checks the file the way the reference implementation does: the
// tensors' byte ranges tile the data section exactly (no overlap, no gap, no
// trailing bytes) and each range holds product(shape) elements of its dtype.
// Offsets returned here are ABSOLUTE byte offsets in the file.
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from './atomic.ts';
import { ModelLoadError } from './errors.ts';

// Bits per element of every dtype the safetensors format defines. All are parsed
// so that an unsupported one can be named in an error; the engine loads only
// WEIGHT_DTYPES.
const DTYPE_BITS: Readonly<Record<string, number>> = {
  BOOL: 8,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  F64: 64,
  I64: 64,
  U64: 64,
  C64: 64,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
};

export type WeightDtype = 'F32' | 'F16' | 'BF16';
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['F32', 'F16', 'BF16'];

export function isWeightDtype(dtype: string): dtype is WeightDtype {
  return (WEIGHT_DTYPES as readonly string[]).includes(dtype);
}

// The reference implementation refuses headers above 100 MB; real ones are a
// few hundred KB even for the largest models.
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsTensorInfo {
  dtype: string; // any safetensors dtype name; see isWeightDtype
  shape: number[];
  offset: number; // absolute byte offset of the first element in the file
  byteLength: number;
}

export interface SafetensorsHeader {
  file: string; // absolute path
  fileSize: number; // bytes
  headerBytes: number; // N, the JSON header's length in bytes
  dataStart: number; // absolute offset of the data section, 8 + N
  tensors: Map<string, SafetensorsTensorInfo>;
  metadata: Record<string, string> | null; // the "__metadata__" entry
}

// Bytes taken by `elements` elements of `dtype`, or null for an unknown dtype
// or a count of sub-byte elements that does not fill whole bytes.
export function dtypeByteLength(dtype: string, elements: number): number | null {
  const bits = DTYPE_BITS[dtype];
  if (bits === undefined) return null;
  const totalBits = elements * bits;
  return totalBits % 8 === 0 ? totalBits / 8 : null;
}

// ---------------------------------------------------------------------------
// Reading

export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const absolute = path.resolve(file);
  const name = path.basename(absolute);
  const redownload = 'Download or export the file again.';
  let handle;
  try {
    handle = await open(absolute, 'r');
  } catch (err) {
    throw new ModelLoadError(`Cannot open ${name} (${absolute}): ${(err as Error).message}.`, absolute);
  }
  try {
    const fileSize = (await handle.stat()).size;
    if (fileSize < 8) {
      throw new ModelLoadError(
        `${name} is truncated: it has ${fileSize} bytes, fewer than the 8-byte header length of a safetensors file. ${redownload}`,
        absolute,
      );
    }
    const lengthBytes = Buffer.alloc(8);
    await readExactly(handle, lengthBytes, 0);
    const headerLength = lengthBytes.readBigUInt64LE(0);
    if (headerLength > BigInt(MAX_HEADER_BYTES)) {
      throw new ModelLoadError(
        `${name} is not a valid safetensors file: its header length field says ${headerLength} bytes, more than the ` +
          `${MAX_HEADER_BYTES}-byte limit. The file is damaged or is not a safetensors file. ${redownload}`,
        absolute,
      );
    }
    const headerBytes = Number(headerLength);
    if (8 + headerBytes > fileSize) {
      throw new ModelLoadError(
        `${name} is truncated: its header length field says ${headerBytes} bytes but only ${fileSize - 8} bytes follow it. ` +
          redownload,
        absolute,
      );
    }
    const headerBuffer = Buffer.alloc(headerBytes);
    await readExactly(handle, headerBuffer, 8);
    return parseHeader(absolute, fileSize, headerBuffer);
  } finally {
    await handle.close();
  }
}

async function readExactly(
  handle: Awaited<ReturnType<typeof open>>,
  buffer: Buffer,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

function parseHeader(file: string, fileSize: number, headerBuffer: Buffer): SafetensorsHeader {
  const name = path.basename(file);
  const bad = (what: string, field?: string): ModelLoadError =>
    new ModelLoadError(
      `${name} is not a valid safetensors file: ${what}. The file is damaged or was written by a broken tool; ` +
        'download or export it again.',
      file,
      field,
    );

  let json: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(headerBuffer);
    json = JSON.parse(text);
  } catch (err) {
    throw bad(`its header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(json)) throw bad('its header is not a JSON object');

  const headerBytes = headerBuffer.length;
  const dataStart = 8 + headerBytes;
  const dataBytes = fileSize - dataStart;
  let metadata: Record<string, string> | null = null;
  const tensors = new Map<string, SafetensorsTensorInfo>();
  const ranges: Array<{ tensor: string; begin: number; end: number }> = [];

  for (const [tensor, entry] of Object.entries(json)) {
    if (tensor === '__metadata__') {
      if (!isPlainObject(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
        throw bad('"__metadata__" must map names to strings', '__metadata__');
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    if (!isPlainObject(entry)) throw bad(`the entry for tensor ${tensor} is not an object`, tensor);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string') throw bad(`tensor ${tensor} has no "dtype"`, tensor);
    if (DTYPE_BITS[dtype] === undefined) {
      throw bad(`tensor ${tensor} has dtype ${JSON.stringify(dtype)}, which the safetensors format does not define`, tensor);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw bad(`tensor ${tensor} has no valid "shape" (a list of non-negative integers)`, tensor);
    }
    const validOffsets =
      Array.isArray(offsets) && offsets.length === 2 && offsets.every(isNonNegativeInteger) ? (offsets as [number, number]) : null;
    if (!validOffsets || validOffsets[0] > validOffsets[1]) {
      throw bad(`tensor ${tensor} has no valid "data_offsets" (two integers [begin, end] with begin <= end)`, tensor);
    }
    const [begin, end] = validOffsets;
    const elements = shape.reduce((a: number, b: number) => a * b, 1);
    const expectedBytes = Number.isSafeInteger(elements) ? dtypeByteLength(dtype, elements) : null;
    if (expectedBytes !== end - begin) {
      throw bad(
        `tensor ${tensor} has shape [${shape.join(', ')}] and dtype ${dtype}, which take ` +
          `${expectedBytes ?? 'an invalid number of'} bytes, but its data_offsets [${begin}, ${end}] span ${end - begin} bytes`,
        tensor,
      );
    }
    if (end > dataBytes) {
      throw new ModelLoadError(
        `${name} is truncated: the data of tensor ${tensor} ends at byte ${dataStart + end} but the file has only ` +
          `${fileSize} bytes (an interrupted download or copy?). Download or export the file again.`,
        file,
        tensor,
      );
    }
    ranges.push({ tensor, begin, end });
    tensors.set(tensor, { dtype, shape: shape.slice(), offset: dataStart + begin, byteLength: end - begin });
  }

  // The ranges must tile [0, dataBytes) exactly, as the reference requires.
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: string | null = null;
  for (const range of ranges) {
    if (range.begin < cursor) {
      throw bad(`the data of tensors ${previous} and ${range.tensor} overlap`, range.tensor);
    }
    if (range.begin > cursor) {
      throw bad(`there are ${range.begin - cursor} unused bytes before the data of tensor ${range.tensor}`, range.tensor);
    }
    cursor = range.end;
    previous = range.tensor;
  }
  if (cursor !== dataBytes) {
    throw bad(`${dataBytes - cursor} bytes follow the data of the last tensor`);
  }
  return { file, fileSize, headerBytes, dataStart, tensors, metadata };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

// ---------------------------------------------------------------------------
// Writing

export type WritableDtype = 'F32' | 'F16' | 'BF16' | 'U8' | 'I8' | 'I32' | 'I64' | 'F64';

export interface TensorToWrite {
  name: string;
  dtype: WritableDtype;
  shape: number[];
  // Raw little-endian element bytes. F16 and BF16 are given as their 16-bit
  // patterns (a Uint16Array) or as bytes; a view's own type is not checked
  // against dtype, only its byte length.
  data: ArrayBufferView;
}

// The reference implementation's Dtype enum order. It writes tensors in
// descending enum order (wide types first), then by name.
const DTYPE_WRITE_RANK: readonly string[] = [
  'BOOL', 'F4', 'F6_E2M3', 'F6_E3M2', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0',
  'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'C64', 'F64', 'I64', 'U64',
];

// Writes a safetensors file atomically, byte for byte as the reference
// implementation (safetensors.torch.save_file) writes the same tensors: ordered
// as DTYPE_WRITE_RANK says, after a compact JSON header ("__metadata__" first)
// padded with spaces to a multiple of 8 bytes, so every tensor starts at an
// offset aligned to its element size.
export async function writeSafetensors(
  file: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<void> {
  if (os.endianness() !== 'LE') throw new Error('writeSafetensors needs a little-endian machine');
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__' || seen.has(t.name)) {
      throw new Error(`writeSafetensors: tensor name ${JSON.stringify(t.name)} is reserved or repeated`);
    }
    seen.add(t.name);
    const elements = t.shape.reduce((a, b) => a * b, 1);
    const expected = dtypeByteLength(t.dtype, elements);
    if (!t.shape.every(isNonNegativeInteger) || expected !== t.data.byteLength) {
      throw new Error(
        `writeSafetensors: tensor ${t.name} has shape [${t.shape.join(', ')}] and dtype ${t.dtype} (${expected} bytes) ` +
          `but ${t.data.byteLength} bytes of data`,
      );
    }
  }
  const ordered = [...tensors].sort(
    (a, b) =>
      DTYPE_WRITE_RANK.indexOf(b.dtype) - DTYPE_WRITE_RANK.indexOf(a.dtype) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );

  // Built by hand to keep this key order (a JS object would move keys like "0"
  // to the front).
  const entries: string[] = [];
  if (metadata) entries.push(`"__metadata__":${JSON.stringify(metadata)}`);
  let offset = 0;
  for (const t of ordered) {
    const entry = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    entries.push(`${JSON.stringify(t.name)}:${JSON.stringify(entry)}`);
    offset += t.data.byteLength;
  }
  let json = `{${entries.join(',')}}`;
  const jsonBytes = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (jsonBytes % 8)) % 8);
  const headerBuffer = Buffer.from(json, 'utf8');
  const lengthBuffer = Buffer.alloc(8);
  lengthBuffer.writeBigUInt64LE(BigInt(headerBuffer.length));

  const chunks: Uint8Array[] = [lengthBuffer, headerBuffer];
  for (const t of ordered) chunks.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  await writeFileAtomic(path.resolve(file), chunks);
}
