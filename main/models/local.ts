// A local model folder, described for the catalogue: what the engine would
// load (planModelLoad checks config.json and every weight's name, shape and
// dtype; its refusals reach the caller as they are, UserErrors naming the file
// and what to do), how big it is, whether it can train chat data, and the
// fingerprint the shelf identifies it by (main/library/fingerprint.ts).
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ModelArch } from '../../engine/model/config.ts';
import { planModelLoad, type TensorRef } from '../../engine/model/folder.ts';
import type { WeightDtype } from '../../engine/model/safetensors.ts';
import { weightsFingerprint } from '../library/fingerprint.ts';

export interface LocalModel {
  path: string; // absolute folder
  name: string; // the folder's name, or the name given (a cache snapshot's folder is a commit hash)
  architecture: ModelArch;
  parameterCount: number; // elements of every weight the engine loads (a tied embedding once)
  dtype: WeightDtype | 'mixed'; // of the loaded weights
  torchDtype: string | null; // config.json's torch_dtype / dtype
  layers: number;
  hiddenSize: number;
  vocabSize: number;
  maxPositionEmbeddings: number; // tokens
  weightBytes: number; // bytes of the weight files
  diskBytes: number; // bytes of every file in the folder (symlinks followed)
  hasTokenizer: boolean; // tokenizer.json present: needed to train on text
  hasChatTemplate: boolean; // a chat template (tokenizer_config.json or chat_template.jinja): needed for chat datasets
  fingerprint: string | null; // null when asked not to compute it
}

export interface DescribeOptions {
  name?: string;
  /** Read the weight samples for the shelf's fingerprint (default true; ~200 KiB per weight file). */
  fingerprint?: boolean;
}

/** Describes a model folder; throws the engine's ModelLoadError (a UserError) when it cannot be loaded. */
export async function describeLocalModel(folder: string, opts: DescribeOptions = {}): Promise<LocalModel> {
  const plan = await planModelLoad(folder);
  const { embed, finalNorm, lmHead, layers } = plan.tensors;
  const refs: TensorRef[] = [embed, finalNorm, ...(lmHead ? [lmHead] : []), ...layers.flatMap((l) => Object.values(l) as TensorRef[])];
  let parameterCount = 0;
  const dtypes = new Set<WeightDtype>();
  for (const ref of refs) {
    parameterCount += ref.shape.reduce((a, b) => a * b, 1);
    dtypes.add(ref.dtype);
  }
  let weightBytes = 0;
  for (const file of plan.files) weightBytes += (await stat(file)).size;
  const c = plan.config;
  return {
    path: plan.dir,
    name: opts.name ?? path.basename(plan.dir),
    architecture: c.arch,
    parameterCount,
    dtype: dtypes.size === 1 ? [...dtypes][0]! : 'mixed',
    torchDtype: c.torchDtype,
    layers: c.numLayers,
    hiddenSize: c.hiddenSize,
    vocabSize: c.vocabSize,
    maxPositionEmbeddings: c.maxPositionEmbeddings,
    weightBytes,
    diskBytes: await folderBytes(plan.dir),
    ...(await tokenizerFacts(plan.dir)),
    fingerprint: opts.fingerprint === false ? null : await weightsFingerprint(plan.files),
  };
}

// Files directly in the folder (model folders are flat); a broken link counts 0.
async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir)) {
    const info = await stat(path.join(dir, entry)).catch(() => null);
    if (info?.isFile()) total += info.size;
  }
  return total;
}

async function tokenizerFacts(dir: string): Promise<{ hasTokenizer: boolean; hasChatTemplate: boolean }> {
  const hasTokenizer = (await stat(path.join(dir, 'tokenizer.json')).catch(() => null))?.isFile() ?? false;
  let hasChatTemplate = (await stat(path.join(dir, 'chat_template.jinja')).catch(() => null))?.isFile() ?? false;
  if (!hasChatTemplate) {
    const text = await readFile(path.join(dir, 'tokenizer_config.json'), 'utf8').catch(() => null);
    try {
      const template = text ? (JSON.parse(text) as { chat_template?: unknown }).chat_template : undefined;
      hasChatTemplate = typeof template === 'string' || (Array.isArray(template) && template.length > 0);
    } catch {
      // An unreadable tokenizer_config.json: training reports it with the file named.
    }
  }
  return { hasTokenizer, hasChatTemplate };
}
