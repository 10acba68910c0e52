// Tiny random-weight models in the real Hugging Face layout, for tests and demos:
// config.json as transformers 5 writes it (or the transformers 4 style with
// top-level rope_theta/rope_scaling), model.safetensors or sharded
// model-0000i-of-0000N.safetensors + model.safetensors.index.json.
//
// Weights are deterministic: each tensor draws from its own PRNG stream, seeded
// from (seed, tensor name), so the same options give the same bytes on every
// machine and however the tensors are sharded. Normals come from mulberry32 +
// Box–Muller; V8 computes Math.log/cos/sqrt in software (fdlibm), identically on
// every platform.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from './atomic.ts';
import type { ModelArch, RopeScaling } from './config.ts';
import { f32ToBf16Bits, f32ToF16Bits } from './half.ts';
import { writeSafetensors, type TensorToWrite, type WeightDtype } from './safetensors.ts';
import { TINY_VOCAB_SIZE, tinyTokenizerFiles, writeTinyTokenizer, type TinyTokenizerOptions } from './tiny-tokenizer.ts';

export interface TinyModelOptions {
  arch: ModelArch;
  hiddenSize?: number; // 64
  intermediateSize?: number; // 128
  numLayers?: number; // 2
  numHeads?: number; // 4
  numKvHeads?: number; // 2
  headDim?: number; // hiddenSize / numHeads
  vocabSize?: number; // 96
  tie?: boolean; // false: write lm_head.weight
  dtype?: WeightDtype; // 'BF16'
  seed?: number; // 0
  shards?: number; // 1
  ropeTheta?: number; // 10000
  ropeScaling?: RopeScaling; // null
  maxPositionEmbeddings?: number; // 2048
  rmsNormEps?: number; // 1e-6
  initStd?: number; // 0.02: std of linear, embedding and bias weights
  normJitter?: number; // 0: RMSNorm weights are 1 + N(0, normJitter²)
  attentionBias?: boolean; // llama, qwen3: attention_bias (q/k/v/o biases). qwen2 always has q/k/v biases
  mlpBias?: boolean; // llama: mlp_bias
  slidingWindow?: number | null; // mistral: null
  bosTokenId?: number | null; // llama/mistral 1, qwen null
  eosTokenId?: number | number[] | null; // llama/mistral 2, qwen null
  configStyle?: 'transformers5' | 'transformers4'; // 'transformers5'
  // Merged into config.json last; a key set to undefined is removed.
  configOverrides?: Record<string, unknown>;
  // Written verbatim as generation_config.json when given.
  generationConfig?: Record<string, unknown>;
  // Also write the tiny byte-level tokenizer (tiny-tokenizer.ts): tokenizer.json,
  // tokenizer_config.json with a chat template, and generation_config.json
  // (unless generationConfig is given). vocabSize then defaults to
  // TINY_VOCAB_SIZE, and bos/eos ids to the tokenizer's. Default off.
  tokenizer?: boolean | TinyTokenizerOptions;
}

export interface TinyModel {
  dir: string; // absolute
  config: Record<string, unknown>; // config.json as written
  files: string[]; // absolute paths of the weight files
  tensorNames: string[]; // in state-dict order
}

const CLASS_NAMES: Record<ModelArch, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
};
const TORCH_DTYPE_NAMES: Record<WeightDtype, string> = { BF16: 'bfloat16', F16: 'float16', F32: 'float32' };

export async function createTinyModel(dir: string, opts: TinyModelOptions): Promise<TinyModel> {
  const root = path.resolve(dir);
  await mkdir(root, { recursive: true });
  const tokenizerOpts = opts.tokenizer === true ? {} : opts.tokenizer || null;
  const tokenizer = tokenizerOpts ? tinyTokenizerFiles(tokenizerOpts) : null;
  if (tokenizer) {
    opts = {
      ...opts,
      vocabSize: opts.vocabSize ?? TINY_VOCAB_SIZE,
      bosTokenId: opts.bosTokenId !== undefined ? opts.bosTokenId : tokenizer.bosTokenId,
      eosTokenId: opts.eosTokenId !== undefined ? opts.eosTokenId : tokenizer.eosTokenId,
    };
    if (opts.vocabSize! < TINY_VOCAB_SIZE - 6)
      throw new Error(`createTinyModel: vocabSize ${opts.vocabSize} is below the tiny tokenizer's ${TINY_VOCAB_SIZE - 6} tokens`);
  }
  const o = resolveOptions(opts);

  const config = tinyConfigJson(o);
  await writeFileAtomic(path.join(root, 'config.json'), [Buffer.from(pythonJson(config))]);
  const generationConfig = opts.generationConfig ?? tokenizer?.generationConfig;
  if (generationConfig) {
    await writeFileAtomic(path.join(root, 'generation_config.json'), [Buffer.from(pythonJson(generationConfig))]);
  }
  if (tokenizerOpts) await writeTinyTokenizer(root, tokenizerOpts);

  const specs = tensorSpecs(o);
  const tensors: TensorToWrite[] = specs.map((spec) => ({
    name: spec.name,
    dtype: o.dtype,
    shape: spec.shape,
    data: encode(randomValues(spec, o), o.dtype),
  }));

  const files: string[] = [];
  if (o.shards === 1) {
    const file = path.join(root, 'model.safetensors');
    await writeSafetensors(file, tensors, { format: 'pt' });
    files.push(file);
  } else {
    if (o.shards > tensors.length) throw new Error(`createTinyModel: ${o.shards} shards for ${tensors.length} tensors`);
    const groups = splitByBytes(tensors, o.shards);
    const weightMap: Record<string, string> = {};
    let totalSize = 0;
    let totalParameters = 0;
    for (let i = 0; i < groups.length; i++) {
      const name = `model-${pad5(i + 1)}-of-${pad5(groups.length)}.safetensors`;
      const file = path.join(root, name);
      await writeSafetensors(file, groups[i]!, { format: 'pt' });
      files.push(file);
      for (const t of groups[i]!) {
        weightMap[t.name] = name;
        totalSize += t.data.byteLength;
        totalParameters += t.shape.reduce((a, b) => a * b, 1);
      }
    }
    const index = { metadata: { total_parameters: totalParameters, total_size: totalSize }, weight_map: weightMap };
    await writeFileAtomic(path.join(root, 'model.safetensors.index.json'), [Buffer.from(pythonJson(index))]);
  }
  return { dir: root, config, files, tensorNames: specs.map((s) => s.name) };
}

type ResolvedOptions = Required<Omit<TinyModelOptions, 'headDim' | 'configOverrides' | 'generationConfig' | 'tokenizer'>> & {
  headDim: number;
  explicitHeadDim: boolean;
  configOverrides: Record<string, unknown>;
};

function resolveOptions(opts: TinyModelOptions): ResolvedOptions {
  const hiddenSize = opts.hiddenSize ?? 64;
  const numHeads = opts.numHeads ?? 4;
  const isQwen = opts.arch === 'qwen2' || opts.arch === 'qwen3';
  return {
    arch: opts.arch,
    hiddenSize,
    intermediateSize: opts.intermediateSize ?? 128,
    numLayers: opts.numLayers ?? 2,
    numHeads,
    numKvHeads: opts.numKvHeads ?? 2,
    headDim: opts.headDim ?? hiddenSize / numHeads,
    explicitHeadDim: opts.headDim !== undefined,
    vocabSize: opts.vocabSize ?? 96,
    tie: opts.tie ?? false,
    dtype: opts.dtype ?? 'BF16',
    seed: opts.seed ?? 0,
    shards: opts.shards ?? 1,
    ropeTheta: opts.ropeTheta ?? 10_000,
    ropeScaling: opts.ropeScaling ?? null,
    maxPositionEmbeddings: opts.maxPositionEmbeddings ?? 2048,
    rmsNormEps: opts.rmsNormEps ?? 1e-6,
    initStd: opts.initStd ?? 0.02,
    normJitter: opts.normJitter ?? 0,
    attentionBias: opts.attentionBias ?? false,
    mlpBias: opts.mlpBias ?? false,
    slidingWindow: opts.slidingWindow ?? null,
    bosTokenId: opts.bosTokenId !== undefined ? opts.bosTokenId : isQwen ? null : 1,
    eosTokenId: opts.eosTokenId !== undefined ? opts.eosTokenId : isQwen ? null : 2,
    configStyle: opts.configStyle ?? 'transformers5',
    configOverrides: opts.configOverrides ?? {},
  };
}

// config.json with the keys LlamaConfig / MistralConfig / Qwen2Config /
// Qwen3Config.to_json_string() write for these options.
function tinyConfigJson(o: ResolvedOptions): Record<string, unknown> {
  const c: Record<string, unknown> = {
    architectures: [CLASS_NAMES[o.arch]],
    attention_dropout: 0.0,
    bos_token_id: o.bosTokenId,
    eos_token_id: o.eosTokenId,
    hidden_act: 'silu',
    hidden_size: o.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: o.intermediateSize,
    max_position_embeddings: o.maxPositionEmbeddings,
    model_type: o.arch,
    num_attention_heads: o.numHeads,
    num_hidden_layers: o.numLayers,
    num_key_value_heads: o.numKvHeads,
    pad_token_id: null,
    rms_norm_eps: o.rmsNormEps,
    tie_word_embeddings: o.tie,
    use_cache: true,
    vocab_size: o.vocabSize,
  };
  if (o.arch !== 'qwen2' || o.explicitHeadDim) c['head_dim'] = o.headDim;
  if (o.arch === 'llama') {
    c['attention_bias'] = o.attentionBias;
    c['mlp_bias'] = o.mlpBias;
    c['pretraining_tp'] = 1;
  }
  if (o.arch === 'mistral') c['sliding_window'] = o.slidingWindow;
  if (o.arch === 'qwen2' || o.arch === 'qwen3') {
    if (o.arch === 'qwen3') c['attention_bias'] = o.attentionBias;
    c['layer_types'] = Array.from({ length: o.numLayers }, () => 'full_attention');
    c['max_window_layers'] = 28;
    c['sliding_window'] = null;
    c['use_sliding_window'] = false;
  }

  const scaling: Record<string, unknown> | null =
    o.ropeScaling === null
      ? null
      : o.ropeScaling.type === 'linear'
        ? { factor: o.ropeScaling.factor, rope_type: 'linear' }
        : {
            factor: o.ropeScaling.factor,
            high_freq_factor: o.ropeScaling.highFreqFactor,
            low_freq_factor: o.ropeScaling.lowFreqFactor,
            original_max_position_embeddings: o.ropeScaling.originalMaxPositionEmbeddings,
            rope_type: 'llama3',
          };
  if (o.configStyle === 'transformers5') {
    c['rope_parameters'] = { ...(scaling ?? { rope_type: 'default' }), rope_theta: o.ropeTheta };
    c['dtype'] = TORCH_DTYPE_NAMES[o.dtype];
    c['transformers_version'] = '5.24.0';
  } else {
    c['rope_theta'] = o.ropeTheta;
    c['rope_scaling'] = scaling;
    c['torch_dtype'] = TORCH_DTYPE_NAMES[o.dtype];
    c['transformers_version'] = '4.57.1';
  }
  for (const [key, value] of Object.entries(o.configOverrides)) {
    if (value === undefined) delete c[key];
    else c[key] = value;
  }
  return c;
}

interface TensorSpec {
  name: string;
  shape: number[];
  kind: 'linear' | 'norm' | 'bias';
}

// State-dict order of a *ForCausalLM model.
function tensorSpecs(o: ResolvedOptions): TensorSpec[] {
  const H = o.hiddenSize;
  const I = o.intermediateSize;
  const qOut = o.numHeads * o.headDim;
  const kvOut = o.numKvHeads * o.headDim;
  const qkvBias = o.arch === 'qwen2' || ((o.arch === 'llama' || o.arch === 'qwen3') && o.attentionBias);
  const oBias = (o.arch === 'llama' || o.arch === 'qwen3') && o.attentionBias;
  const mlpBias = o.arch === 'llama' && o.mlpBias;
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [o.vocabSize, H], kind: 'linear' }];
  for (let i = 0; i < o.numLayers; i++) {
    const attn = `model.layers.${i}.self_attn.`;
    const mlp = `model.layers.${i}.mlp.`;
    specs.push({ name: `${attn}q_proj.weight`, shape: [qOut, H], kind: 'linear' });
    if (qkvBias) specs.push({ name: `${attn}q_proj.bias`, shape: [qOut], kind: 'bias' });
    specs.push({ name: `${attn}k_proj.weight`, shape: [kvOut, H], kind: 'linear' });
    if (qkvBias) specs.push({ name: `${attn}k_proj.bias`, shape: [kvOut], kind: 'bias' });
    specs.push({ name: `${attn}v_proj.weight`, shape: [kvOut, H], kind: 'linear' });
    if (qkvBias) specs.push({ name: `${attn}v_proj.bias`, shape: [kvOut], kind: 'bias' });
    specs.push({ name: `${attn}o_proj.weight`, shape: [H, qOut], kind: 'linear' });
    if (oBias) specs.push({ name: `${attn}o_proj.bias`, shape: [H], kind: 'bias' });
    if (o.arch === 'qwen3') {
      specs.push({ name: `${attn}q_norm.weight`, shape: [o.headDim], kind: 'norm' });
      specs.push({ name: `${attn}k_norm.weight`, shape: [o.headDim], kind: 'norm' });
    }
    specs.push({ name: `${mlp}gate_proj.weight`, shape: [I, H], kind: 'linear' });
    if (mlpBias) specs.push({ name: `${mlp}gate_proj.bias`, shape: [I], kind: 'bias' });
    specs.push({ name: `${mlp}up_proj.weight`, shape: [I, H], kind: 'linear' });
    if (mlpBias) specs.push({ name: `${mlp}up_proj.bias`, shape: [I], kind: 'bias' });
    specs.push({ name: `${mlp}down_proj.weight`, shape: [H, I], kind: 'linear' });
    if (mlpBias) specs.push({ name: `${mlp}down_proj.bias`, shape: [H], kind: 'bias' });
    specs.push({ name: `model.layers.${i}.input_layernorm.weight`, shape: [H], kind: 'norm' });
    specs.push({ name: `model.layers.${i}.post_attention_layernorm.weight`, shape: [H], kind: 'norm' });
  }
  specs.push({ name: 'model.norm.weight', shape: [H], kind: 'norm' });
  if (!o.tie) specs.push({ name: 'lm_head.weight', shape: [o.vocabSize, H], kind: 'linear' });
  return specs;
}

function randomValues(spec: TensorSpec, o: ResolvedOptions): Float32Array {
  const count = spec.shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(count);
  const normal = normalStream(hashSeed(o.seed, spec.name));
  if (spec.kind === 'norm') {
    for (let i = 0; i < count; i++) values[i] = 1 + (o.normJitter === 0 ? 0 : o.normJitter * normal());
  } else {
    for (let i = 0; i < count; i++) values[i] = o.initStd * normal();
  }
  return values;
}

function encode(values: Float32Array, dtype: WeightDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const toBits = dtype === 'BF16' ? f32ToBf16Bits : f32ToF16Bits;
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = toBits(values[i]!);
  return new Uint8Array(out.buffer);
}

// Contiguous groups of about equal bytes, none empty, in state-dict order (as
// transformers' shard splitting keeps order).
function splitByBytes(tensors: TensorToWrite[], shards: number): TensorToWrite[][] {
  const total = tensors.reduce((sum, t) => sum + t.data.byteLength, 0);
  const groups: TensorToWrite[][] = [];
  let current: TensorToWrite[] = [];
  let done = 0;
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i]!;
    current.push(t);
    done += t.data.byteLength;
    const groupsLeft = shards - groups.length - 1; // after closing this one
    const tensorsLeft = tensors.length - i - 1;
    const mustClose = tensorsLeft === groupsLeft;
    const mayClose = groupsLeft > 0 && tensorsLeft >= groupsLeft;
    if (mayClose && (mustClose || done >= (total * (groups.length + 1)) / shards)) {
      groups.push(current);
      current = [];
    }
  }
  groups.push(current);
  return groups;
}

// FNV-1a over the tensor name, mixed with the seed.
function hashSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

// Standard normal samples: mulberry32 uniforms through Box–Muller.
function normalStream(state: number): () => number {
  let a = state | 0;
  const uniform = (): number => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296; // [0, 1)
  };
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const value = spare;
      spare = null;
      return value;
    }
    const u1 = 1 - uniform(); // (0, 1]
    const u2 = uniform();
    const radius = Math.sqrt(-2 * Math.log(u1));
    spare = radius * Math.sin(2 * Math.PI * u2);
    return radius * Math.cos(2 * Math.PI * u2);
  };
}

// JSON as Python's json.dumps(obj, indent=2, sort_keys=True) + "\n" lays it out,
// which is how transformers writes its files. Fields that transformers 5's
// strict config classes type as float are spelled as floats (10000.0, not
// 10000), or from_pretrained refuses them.
const FLOAT_FIELDS = new Set([
  'attention_dropout',
  'initializer_range',
  'rms_norm_eps',
  'rope_theta',
  'factor',
  'low_freq_factor',
  'high_freq_factor',
]);

function pythonJson(value: unknown): string {
  return `${toPythonJson(value, '', false)}\n`;
}

function toPythonJson(value: unknown, indent: string, isFloat: boolean): string {
  if (typeof value === 'number' && isFloat && Number.isInteger(value)) return `${value}.0`;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    const inner = indent + '  ';
    return `[\n${value.map((v) => inner + toPythonJson(v, inner, false)).join(',\n')}\n${indent}]`;
  }
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort();
    if (keys.length === 0) return '{}';
    const inner = indent + '  ';
    const record = value as Record<string, unknown>;
    const lines = keys.map((key) => `${inner}${JSON.stringify(key)}: ${toPythonJson(record[key], inner, FLOAT_FIELDS.has(key))}`);
    return `{\n${lines.join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function pad5(n: number): string {
  return String(n).padStart(5, '0');
}
