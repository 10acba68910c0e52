// A description of a PEFT adapter folder for people and for the adapter shelf:
// rank, alpha, scale, adapted modules, base model, size on disk, parameter
// count. Reads adapter_config.json and the safetensors header only (checked
// as strictly as loading checks them), never the tensor data.
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Projection } from '../api.ts';
import type { ModelConfig } from '../model/config.ts';
import { openPeftAdapter } from './peft.ts';

export interface AdapterDescription {
  dir: string; // absolute
  rank: number;
  alpha: number;
  scale: number; // alpha / rank, or alpha / sqrt(rank) with rsLoRA
  rslora: boolean;
  dropout: number;
  targets: Projection[]; // adapted in at least one layer
  layers: number[]; // layers with at least one adapted projection
  modules: number; // adapted modules (sites)
  numLayers: number; // layers the adapter was resolved against
  allLayers: boolean; // every target projection in every one of those layers
  baseModel: string | null; // base_model_name_or_path
  parameters: number; // elements of all A and B matrices
  dtypes: string[]; // dtypes of the stored A and B tensors
  bytesOnDisk: number; // all regular files in the folder
}

/** Describes the adapter in `dir`; with `base`, also checks it fits that base model. */
export async function describeAdapter(dir: string, base?: ModelConfig): Promise<AdapterDescription> {
  const a = await openPeftAdapter(dir, base);
  const c = a.config;
  let parameters = 0;
  const dtypes = new Set<string>();
  for (const t of a.tensors.values()) {
    parameters += t.shape.reduce((x, y) => x * y, 1);
    dtypes.add(t.dtype);
  }
  let bytesOnDisk = 0;
  for (const entry of await readdir(a.dir, { withFileTypes: true }))
    if (entry.isFile()) bytesOnDisk += (await stat(path.join(a.dir, entry.name))).size;
  return {
    dir: a.dir,
    rank: c.rank,
    alpha: c.alpha,
    scale: c.scale,
    rslora: c.rslora,
    dropout: c.dropout,
    targets: c.targets,
    layers: c.layers,
    modules: c.sites.length,
    numLayers: c.numLayers,
    allLayers: c.sites.length === c.targets.length * c.numLayers,
    baseModel: c.baseModel,
    parameters,
    dtypes: [...dtypes].sort(),
    bytesOnDisk,
  };
}
