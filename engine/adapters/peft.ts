// Adapters on disk in the PEFT layout, so they move in and out of the Python
// ecosystem unchanged:
//   adapter_config.json         peft_type "LORA", r, lora_alpha, lora_dropout,
//                               target_modules, use_rslora, bias, task_type, ...
//   adapter_model.safetensors   base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight  [r, in]
//                               base_model.model.model.layers.{i}.self_attn.q_proj.lora_B.weight  [out, r]
//                               (mlp.{gate,up,down}_proj for the MLP)
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { PROJECTIONS, type EngineModel, type Projection } from '../api.ts';
import { writeFileAtomic } from '../model/atomic.ts';
import { ModelLoadError } from '../model/errors.ts';
import { readSafetensorsHeader, writeSafetensors } from '../model/safetensors.ts';

export const PEFT_CONFIG_FILE = 'adapter_config.json';
export const PEFT_WEIGHTS_FILE = 'adapter_model.safetensors';

export function peftKey(layer: number, proj: Projection, which: 'A' | 'B'): string {
  const block = proj === 'gate_proj' || proj === 'up_proj' || proj === 'down_proj' ? 'mlp' : 'self_attn';
  return `base_model.model.model.layers.${layer}.${block}.${proj}.lora_${which}.weight`;
}

export interface PeftAdapterConfig {
  rank: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  targets: Projection[];
  baseModel: string | null;
}

/** Reads and checks adapter_config.json; refuses what the engine cannot apply. */
export async function readPeftConfig(dir: string): Promise<PeftAdapterConfig> {
  const file = path.join(dir, PEFT_CONFIG_FILE);
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch {
    throw new ModelLoadError(`${dir} is not a PEFT adapter folder: ${PEFT_CONFIG_FILE} is missing.`, file);
  }
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(raw) as Record<string, unknown>;
  } catch (e) {
    throw new ModelLoadError(`${PEFT_CONFIG_FILE} is not valid JSON (${(e as Error).message}).`, file);
  }
  const bad = (field: string, why: string) => new ModelLoadError(`${PEFT_CONFIG_FILE}: ${field} ${why}`, file, field);
  if (j.peft_type !== 'LORA') throw bad('peft_type', `is ${JSON.stringify(j.peft_type)}; only LoRA adapters ("LORA") are supported.`);
  const r = j.r;
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1) throw bad('r', 'must be a positive integer.');
  const alpha = j.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !(alpha > 0)) throw bad('lora_alpha', 'must be a positive number.');
  const dropout = j.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || dropout < 0 || dropout >= 1) throw bad('lora_dropout', 'must be in [0, 1).');
  if (j.bias !== undefined && j.bias !== 'none') throw bad('bias', `is ${JSON.stringify(j.bias)}; only "none" is supported.`);
  for (const key of ['use_dora', 'fan_in_fan_out'] as const)
    if (j[key] === true) throw bad(key, 'is true; such adapters are not supported.');
  for (const key of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = j[key];
    if (v && typeof v === 'object' && Object.keys(v).length > 0) throw bad(key, 'sets per-layer ranks or alphas, which are not supported.');
  }
  let modules = j.target_modules;
  if (typeof modules === 'string') modules = [modules];
  if (!Array.isArray(modules) || modules.length === 0) throw bad('target_modules', 'must list the adapted projections.');
  const targets: Projection[] = [];
  for (const m of modules) {
    if (!PROJECTIONS.includes(m as Projection))
      throw bad('target_modules', `includes "${String(m)}"; supported: ${PROJECTIONS.join(', ')}.`);
    targets.push(m as Projection);
  }
  return {
    rank: r,
    alpha,
    dropout,
    rslora: j.use_rslora === true,
    targets: PROJECTIONS.filter((p) => targets.includes(p)),
    baseModel: typeof j.base_model_name_or_path === 'string' ? j.base_model_name_or_path : null,
  };
}

function toFloat32(dtype: string, bytes: Buffer): Float32Array {
  const n = dtype === 'F32' ? bytes.length / 4 : bytes.length / 2;
  const out = new Float32Array(n);
  if (dtype === 'F32') {
    for (let i = 0; i < n; ++i) out[i] = bytes.readFloatLE(i * 4);
  } else if (dtype === 'BF16') {
    const u32 = new Uint32Array(1);
    const f32 = new Float32Array(u32.buffer);
    for (let i = 0; i < n; ++i) {
      u32[0] = bytes.readUInt16LE(i * 2) << 16;
      out[i] = f32[0]!;
    }
  } else {
    for (let i = 0; i < n; ++i) out[i] = halfToFloat(bytes.readUInt16LE(i * 2));
  }
  return out;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Loads a PEFT adapter folder into `model` under `name`. Shapes must fit the base. */
export async function loadPeftAdapter(model: EngineModel, dir: string, name: string): Promise<PeftAdapterConfig> {
  const cfg = await readPeftConfig(dir);
  const file = path.join(dir, PEFT_WEIGHTS_FILE);
  const header = await readSafetensorsHeader(file);
  const data = await readFile(file);
  const c = model.config;
  const qd = c.numHeads * c.headDim;
  const kvd = c.numKvHeads * c.headDim;
  const shapes: Record<Projection, [number, number]> = {
    q_proj: [qd, c.hiddenSize], k_proj: [kvd, c.hiddenSize], v_proj: [kvd, c.hiddenSize], o_proj: [c.hiddenSize, qd],
    gate_proj: [c.intermediateSize, c.hiddenSize], up_proj: [c.intermediateSize, c.hiddenSize], down_proj: [c.hiddenSize, c.intermediateSize],
  };
  const tensors: Array<{ layer: number; proj: Projection; which: 'A' | 'B'; values: Float32Array }> = [];
  for (let layer = 0; layer < c.numLayers; ++layer) {
    for (const proj of cfg.targets) {
      const [out, inp] = shapes[proj];
      for (const which of ['A', 'B'] as const) {
        const key = peftKey(layer, proj, which);
        const t = header.tensors.get(key) ?? header.tensors.get(key.replace('.weight', '.default.weight'));
        if (!t)
          throw new ModelLoadError(`${PEFT_WEIGHTS_FILE} has no tensor ${key}, which ${PEFT_CONFIG_FILE} (target_modules) implies. The adapter is incomplete or for a model with fewer layers.`, file, key);
        const want = which === 'A' ? [cfg.rank, inp] : [out, cfg.rank];
        if (t.shape.length !== 2 || t.shape[0] !== want[0] || t.shape[1] !== want[1])
          throw new ModelLoadError(
            `tensor ${key} in ${PEFT_WEIGHTS_FILE} has shape [${t.shape.join(', ')}] but this base model needs [${want.join(', ')}]: ` +
              'the adapter was trained for a different base model. Choose the base model it was made for.',
            file, key,
          );
        if (!['F32', 'F16', 'BF16'].includes(t.dtype))
          throw new ModelLoadError(`tensor ${key} in ${PEFT_WEIGHTS_FILE} has dtype ${t.dtype}; supported: F32, F16, BF16.`, file, key);
        tensors.push({ layer, proj, which, values: toFloat32(t.dtype, data.subarray(t.offset, t.offset + t.byteLength)) });
      }
    }
  }
  model.addAdapter(name, { rank: cfg.rank, alpha: cfg.alpha, dropout: cfg.dropout, rslora: cfg.rslora, targets: cfg.targets });
  for (const t of tensors) model.writeAdapterTensor(name, t.layer, t.proj, t.which, t.values);
  return cfg;
}

/** Writes adapter `name` of `model` as a PEFT folder (atomic files). */
export async function savePeftAdapter(model: EngineModel, name: string, dir: string, opts: { baseModel?: string } = {}): Promise<void> {
  const info = model.adapterInfo(name);
  await mkdir(dir, { recursive: true });
  const tensors = [];
  for (let layer = 0; layer < model.config.numLayers; ++layer) {
    for (const proj of info.targets) {
      for (const which of ['A', 'B'] as const) {
        const values = model.readAdapterTensor(name, layer, proj, which);
        const shape = which === 'A' ? [info.rank, values.length / info.rank] : [values.length / info.rank, info.rank];
        tensors.push({ name: peftKey(layer, proj, which), dtype: 'F32' as const, shape, data: values });
      }
    }
  }
  await writeSafetensors(path.join(dir, PEFT_WEIGHTS_FILE), tensors);
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: opts.baseModel ?? null,
    r: info.rank,
    lora_alpha: info.alpha,
    lora_dropout: info.dropout,
    target_modules: info.targets,
    use_rslora: info.rslora,
    bias: 'none',
    fan_in_fan_out: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    use_dora: false,
  };
  await writeFileAtomic(path.join(dir, PEFT_CONFIG_FILE), [Buffer.from(JSON.stringify(config, null, 2) + '\n')]);
}
