// Identities of what the shelf records, cheap enough to compute at every import:
//   a base model's fingerprint: sha256 over its weight files, each contributing
//     its name, its size in bytes, its safetensors header (the JSON listing
//     every tensor's name, dtype, shape and byte range), and three samples of
//     its data (SAMPLE_BYTES at the start, middle and end of the data section).
//     Headers and sizes alone are the same for every checkpoint of one
//     architecture (a base model and its instruct tune); the samples tell
//     those apart. Reads about 8 + N + 3 x 64 KiB bytes per file, whatever its size.
//   a dataset's content hash: sha256 over the file's bytes (streamed).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { planModelLoad, type TensorRef } from '../../engine/model/folder.ts';
import type { ModelArch } from '../../engine/model/config.ts';
import { ModelLoadError } from '../../engine/model/errors.ts';

async function readAt(file: string, length: number, position: number): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const bytes = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await handle.read(bytes, done, length - done, position + done);
      if (bytesRead === 0) throw new ModelLoadError(`${path.basename(file)} ended early while reading its header; copy the model again.`, file);
      done += bytesRead;
    }
    return bytes;
  } finally {
    await handle.close();
  }
}

const SAMPLE_BYTES = 64 * 1024;

/** sha256 (hex) of the weight files' names, sizes, safetensors headers and data samples, in the order given. */
export async function weightsFingerprint(files: readonly string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const file of files) {
    const size = (await stat(file)).size;
    const headerLength = Number((await readAt(file, 8, 0)).readBigUInt64LE(0));
    hash.update(`${path.basename(file)}\0${size}\0`);
    hash.update(await readAt(file, headerLength, 8));
    const dataStart = 8 + headerLength;
    const dataBytes = size - dataStart;
    const sample = Math.min(SAMPLE_BYTES, dataBytes);
    for (const at of [dataStart, dataStart + Math.floor((dataBytes - sample) / 2), size - sample])
      hash.update(await readAt(file, sample, at));
  }
  return hash.digest('hex');
}

export interface BaseModelFacts {
  path: string; // absolute folder
  name: string; // the folder's name
  architecture: ModelArch;
  parameterCount: number; // elements of every weight the engine loads (a tied embedding once)
  weightBytes: number; // bytes of the weight files
  fingerprint: string;
}

/** Reads a model folder's config and weight headers (planModelLoad checks them) and fingerprints it. */
export async function describeBaseModel(folder: string): Promise<BaseModelFacts> {
  const plan = await planModelLoad(folder);
  const { embed, finalNorm, lmHead, layers } = plan.tensors;
  const refs: TensorRef[] = [embed, finalNorm, ...(lmHead ? [lmHead] : []), ...layers.flatMap((l) => Object.values(l) as TensorRef[])];
  let parameterCount = 0;
  for (const ref of refs) parameterCount += ref.shape.reduce((a, b) => a * b, 1);
  let weightBytes = 0;
  for (const file of plan.files) weightBytes += (await stat(file)).size;
  return {
    path: plan.dir,
    name: path.basename(plan.dir),
    architecture: plan.config.arch,
    parameterCount,
    weightBytes,
    fingerprint: await weightsFingerprint(plan.files),
  };
}

/** sha256 (hex) of a file's bytes and its size. */
export async function fileContentHash(file: string): Promise<{ hash: string; sizeBytes: number }> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    sizeBytes += (chunk as Buffer).length;
  }
  return { hash: hash.digest('hex'), sizeBytes };
}
