// config.json → ModelConfig, the one normalized description of a model that the
// rest of the engine reads.
//
// Defaults follow transformers 5.24 (models/{llama,mistral,qwen2,qwen3}/
// configuration_*.py and RotaryEmbeddingConfigMixin in modeling_rope_utils.py),
// so a folder means here what it means to `AutoModelForCausalLM.from_pretrained`.
// Where transformers would silently run something the engine does not
// implement (yarn RoPE, remote code, a different activation), the config is
// refused with a ModelLoadError naming the field.
import path from 'node:path';
import { ModelLoadError } from './errors.ts';

export type ModelArch = 'llama' | 'mistral' | 'qwen2' | 'qwen3';
export const MODEL_ARCHS: readonly ModelArch[] = ['llama', 'mistral', 'qwen2', 'qwen3'];

export type RopeScaling =
  | null
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    }
  | { type: 'linear'; factor: number };

export interface ModelConfig {
  arch: ModelArch;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  attentionBias: boolean; // biases on q_proj, k_proj, v_proj
  oProjBias: boolean; // bias on o_proj
  mlpBias: boolean; // biases on gate_proj, up_proj, down_proj
  qkNorm: boolean; // RMSNorm over each head of q and k before RoPE (qwen3)
  bosTokenId: number | null;
  eosTokenIds: number[]; // generation_config.json's, else config.json's
  torchDtype: string | null; // e.g. 'bfloat16': the dtype the weights were saved in
  slidingWindow: number | null; // recorded only; the engine trains shorter sequences
}

// Class defaults of each transformers config, used when config.json omits a key.
interface ArchDefaults {
  numKvHeads: number | 'numHeads';
  headDim: number | 'derived'; // 'derived' = hidden_size / num_attention_heads
  maxPositionEmbeddings: number;
  bosTokenId: number | null;
  eosTokenId: number | null;
}

const ARCH_DEFAULTS: Record<ModelArch, ArchDefaults> = {
  llama: { numKvHeads: 'numHeads', headDim: 'derived', maxPositionEmbeddings: 2048, bosTokenId: 1, eosTokenId: 2 },
  mistral: { numKvHeads: 8, headDim: 'derived', maxPositionEmbeddings: 4096 * 32, bosTokenId: 1, eosTokenId: 2 },
  qwen2: { numKvHeads: 32, headDim: 'derived', maxPositionEmbeddings: 32768, bosTokenId: null, eosTokenId: null },
  qwen3: { numKvHeads: 32, headDim: 128, maxPositionEmbeddings: 32768, bosTokenId: null, eosTokenId: null },
};

const DEFAULT_ROPE_THETA = 10_000; // RotaryEmbeddingConfigMixin.default_theta
const DEFAULT_RMS_NORM_EPS = 1e-6;
const DEFAULT_SLIDING_WINDOW = 4096; // mistral, and qwen2/qwen3 when use_sliding_window

type Json = Record<string, unknown>;

// Parses config.json's content. `file` is config.json's path (named in errors);
// `generationConfig` is generation_config.json's parsed content, if present.
export function parseModelConfig(json: unknown, file: string, generationConfig?: unknown): ModelConfig {
  const name = path.basename(file);
  const fail = (field: string, problem: string, todo: string): ModelLoadError =>
    new ModelLoadError(`${name}: ${problem}. ${todo}`, file, field);
  const fixConfig = 'Fix config.json or use an unmodified copy of the model.';
  if (!isObject(json)) throw fail('', 'the file does not hold a JSON object', fixConfig);

  // --- architecture and refusals -------------------------------------------
  const modelType = json['model_type'];
  if (typeof modelType !== 'string' || !(MODEL_ARCHS as readonly string[]).includes(modelType)) {
    const what = typeof modelType === 'string' ? `model_type '${modelType}' is not supported` : 'model_type is missing';
    throw fail(
      'model_type',
      `${what}; LoRA Studio trains llama, mistral, qwen2 and qwen3 models`,
      'Choose a model of one of these families (Llama, SmolLM, TinyLlama, Mistral, Qwen2/2.5, Qwen3).',
    );
  }
  const arch = modelType as ModelArch;
  if (json['auto_map'] !== undefined) {
    throw fail(
      'auto_map',
      'auto_map is set, so this model relies on its own Python code (remote code); LoRA Studio never runs code shipped with a model',
      'Use a version of the model that loads with the standard transformers classes (without trust_remote_code).',
    );
  }
  const quantization = json['quantization_config'];
  if (quantization !== undefined && quantization !== null) {
    const method = isObject(quantization) && typeof quantization['quant_method'] === 'string' ? ` (${quantization['quant_method']})` : '';
    throw fail(
      'quantization_config',
      `quantization_config says the model is already quantized${method}; LoRA Studio loads F32, F16 or BF16 weights`,
      'Use the original, unquantized model; QLoRA quantizes it to 4 bits itself.',
    );
  }
  const activation = json['hidden_act'] ?? 'silu';
  if (activation !== 'silu' && activation !== 'swish') {
    throw fail('hidden_act', `hidden_act ${JSON.stringify(activation)} is not supported; LoRA Studio implements SiLU (SwiGLU) MLPs`, fixConfig);
  }

  // --- readers -------------------------------------------------------------
  const positiveInt = (field: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw fail(field, `${field} must be a positive integer, got ${JSON.stringify(value)}`, fixConfig);
    }
    return value;
  };
  const required = (field: string): number => {
    if (json[field] === undefined || json[field] === null) throw fail(field, `${field} is missing`, fixConfig);
    return positiveInt(field, json[field]);
  };
  const optionalInt = (field: string, fallback: number): number =>
    json[field] === undefined || json[field] === null ? fallback : positiveInt(field, json[field]);
  const positiveNumber = (field: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw fail(field, `${field} must be a positive number, got ${JSON.stringify(value)}`, fixConfig);
    }
    return value;
  };
  const bool = (field: string, fallback: boolean): boolean => {
    const value = json[field];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'boolean') throw fail(field, `${field} must be true or false, got ${JSON.stringify(value)}`, fixConfig);
    return value;
  };

  // --- sizes ---------------------------------------------------------------
  const defaults = ARCH_DEFAULTS[arch];
  const vocabSize = required('vocab_size');
  const hiddenSize = required('hidden_size');
  const intermediateSize = required('intermediate_size');
  const numLayers = required('num_hidden_layers');
  const numHeads = required('num_attention_heads');
  // An explicit null means "same as num_attention_heads" in every __post_init__;
  // an absent key takes the class default (8 for mistral, 32 for qwen2/qwen3).
  const numKvHeads =
    json['num_key_value_heads'] === null
      ? numHeads
      : optionalInt('num_key_value_heads', defaults.numKvHeads === 'numHeads' ? numHeads : defaults.numKvHeads);
  if (numHeads % numKvHeads !== 0) {
    throw fail(
      'num_key_value_heads',
      `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}` +
        (json['num_key_value_heads'] === undefined ? ` (not set; the ${arch} default is ${numKvHeads})` : ''),
      fixConfig,
    );
  }
  let headDim: number;
  if (json['head_dim'] !== undefined && json['head_dim'] !== null) {
    headDim = positiveInt('head_dim', json['head_dim']);
  } else if (json['head_dim'] === undefined && defaults.headDim !== 'derived') {
    headDim = defaults.headDim;
  } else {
    if (hiddenSize % numHeads !== 0) {
      throw fail(
        'head_dim',
        `head_dim is not given and hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}`,
        fixConfig,
      );
    }
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) throw fail('head_dim', `head_dim ${headDim} is odd; rotary embeddings need an even head size`, fixConfig);

  const maxPositionEmbeddings = optionalInt('max_position_embeddings', defaults.maxPositionEmbeddings);
  const rmsNormEps =
    json['rms_norm_eps'] === undefined || json['rms_norm_eps'] === null
      ? DEFAULT_RMS_NORM_EPS
      : positiveNumber('rms_norm_eps', json['rms_norm_eps']);

  // --- biases and norms, as each modeling_*.py builds its layers -----------
  let attentionBias = false;
  let oProjBias = false;
  let mlpBias = false;
  if (arch === 'llama') {
    attentionBias = oProjBias = bool('attention_bias', false); // LlamaAttention: q, k, v and o
    mlpBias = bool('mlp_bias', false);
  } else if (arch === 'qwen2') {
    attentionBias = true; // Qwen2Attention: q, k, v always biased; o never
  } else if (arch === 'qwen3') {
    attentionBias = oProjBias = bool('attention_bias', false); // Qwen3Attention: q, k, v and o
  }
  // mistral: MistralAttention and MistralMLP are built with bias=False whatever
  // config.json says.

  // --- rotary embeddings ---------------------------------------------------
  const { ropeTheta, ropeScaling } = parseRope(json, arch, maxPositionEmbeddings, fail);

  // --- sliding window (recorded only) --------------------------------------
  let slidingWindow: number | null = null;
  const windowValue = (): number | null =>
    json['sliding_window'] === undefined
      ? DEFAULT_SLIDING_WINDOW
      : json['sliding_window'] === null
        ? null
        : positiveInt('sliding_window', json['sliding_window']);
  if (arch === 'mistral') slidingWindow = windowValue();
  if ((arch === 'qwen2' || arch === 'qwen3') && bool('use_sliding_window', false)) slidingWindow = windowValue();

  // --- special tokens ------------------------------------------------------
  const tokenIds = (source: Json, field: string, sourceFile: string): number[] | null => {
    const value = source[field];
    if (value === undefined || value === null) return null;
    const list = Array.isArray(value) ? value : [value];
    if (!list.every((v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)) {
      throw new ModelLoadError(
        `${path.basename(sourceFile)}: ${field} must be a token id or a list of token ids, got ${JSON.stringify(value)}. ` +
          `Fix ${path.basename(sourceFile)} or use an unmodified copy of the model.`,
        sourceFile,
        field,
      );
    }
    return [...new Set(list as number[])];
  };
  const generationFile = path.join(path.dirname(file), 'generation_config.json');
  const generation = isObject(generationConfig) ? generationConfig : {};
  // bos: config.json's (even null), else generation_config.json's, else the class default.
  let bosTokenId: number | null = defaults.bosTokenId;
  if (json['bos_token_id'] !== undefined) {
    bosTokenId = tokenIds(json, 'bos_token_id', file)?.[0] ?? null;
  } else if (generation['bos_token_id'] !== undefined) {
    bosTokenId = tokenIds(generation, 'bos_token_id', generationFile)?.[0] ?? null;
  }
  // eos: generation_config.json's (what generate() stops on), else config.json's, else the class default.
  const defaultEos = defaults.eosTokenId === null ? null : [defaults.eosTokenId];
  const configEos = json['eos_token_id'] !== undefined ? tokenIds(json, 'eos_token_id', file) : defaultEos;
  const eosTokenIds = tokenIds(generation, 'eos_token_id', generationFile) ?? configEos ?? [];

  // transformers 5 writes "dtype"; older versions wrote "torch_dtype".
  const dtype = json['dtype'] ?? json['torch_dtype'];

  return {
    arch,
    vocabSize,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps,
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings,
    tieWordEmbeddings: bool('tie_word_embeddings', false), // False in all four config classes
    attentionBias,
    oProjBias,
    mlpBias,
    qkNorm: arch === 'qwen3',
    bosTokenId,
    eosTokenIds,
    torchDtype: typeof dtype === 'string' ? dtype : null,
    slidingWindow,
  };
}

// RoPE settings, resolved as RotaryEmbeddingConfigMixin.convert_rope_params_to_dict
// and standardize_rope_params do in transformers 5:
//   - a truthy top-level "rope_scaling" (transformers 4 configs) wins over
//     "rope_parameters" (what transformers 5 writes);
//   - rope_theta: the dict's "rope_theta", else the top-level "rope_theta",
//     else 10000;
//   - the type: the dict's "rope_type", else its legacy "type", else "default";
//   - llama3's original_max_position_embeddings: the dict's, else a top-level
//     one, else max_position_embeddings.
// A dict nested by layer type ({"full_attention": {...}, ...}) is accepted when
// every layer type has the same settings.
function parseRope(
  json: Json,
  arch: ModelArch,
  maxPositionEmbeddings: number,
  fail: (field: string, problem: string, todo: string) => ModelLoadError,
): { ropeTheta: number; ropeScaling: RopeScaling } {
  const fixConfig = 'Fix config.json or use an unmodified copy of the model.';
  const scaling = json['rope_scaling'];
  const useScaling = isObject(scaling) && Object.keys(scaling).length > 0;
  const field = useScaling ? 'rope_scaling' : 'rope_parameters';
  const raw = useScaling ? scaling : json['rope_parameters'];
  if (raw !== undefined && raw !== null && !isObject(raw)) {
    throw fail(field, `${field} must be an object, got ${JSON.stringify(raw)}`, fixConfig);
  }
  let params: Json = raw ?? {};

  const layerTypes = new Set<string>(['full_attention', 'sliding_attention']);
  if (Array.isArray(json['layer_types'])) for (const t of json['layer_types']) if (typeof t === 'string') layerTypes.add(t);
  const nested = Object.keys(params).filter((key) => layerTypes.has(key));
  if (nested.length > 0) {
    const dicts = nested.map((key) => params[key]).filter((d) => d !== null && d !== undefined);
    const first = dicts[0];
    if (!isObject(first) || !dicts.every((d) => isObject(d) && JSON.stringify(sortKeys(d)) === JSON.stringify(sortKeys(first)))) {
      throw fail(
        field,
        `${field} gives different rotary embedding settings per layer type (${nested.join(', ')}); ` +
          'LoRA Studio supports one setting for all layers',
        'Choose a model that uses the same RoPE settings in every layer.',
      );
    }
    params = first;
  }

  const thetaValue = params['rope_theta'] ?? json['rope_theta'] ?? DEFAULT_ROPE_THETA;
  if (typeof thetaValue !== 'number' || !Number.isFinite(thetaValue) || thetaValue <= 0) {
    throw fail(`${field}.rope_theta`, `rope_theta must be a positive number, got ${JSON.stringify(thetaValue)}`, fixConfig);
  }
  const ropeTheta = thetaValue;
  const ropeType = params['rope_type'] ?? params['type'] ?? 'default';
  const typeField = params['rope_type'] !== undefined ? `${field}.rope_type` : `${field}.type`;

  const number = (key: string): number => {
    const value = params[key];
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw fail(
        `${field}.${key}`,
        `${field}.${key} must be a positive number for ${String(ropeType)} RoPE, got ${JSON.stringify(value)}`,
        fixConfig,
      );
    }
    return value;
  };
  const requireFullRotary = (): void => {
    const factor = params['partial_rotary_factor'] ?? json['partial_rotary_factor'];
    if (factor !== undefined && factor !== null && factor !== 1) {
      throw fail(
        'partial_rotary_factor',
        `partial_rotary_factor ${JSON.stringify(factor)} is not supported; LoRA Studio rotates the whole head`,
        'Choose a model that applies RoPE to the full head dimension.',
      );
    }
  };

  switch (ropeType) {
    case 'default':
      // compute_default_rope_parameters of these models ignores partial_rotary_factor.
      return { ropeTheta, ropeScaling: null };
    case 'linear':
      requireFullRotary();
      return { ropeTheta, ropeScaling: { type: 'linear', factor: number('factor') } };
    case 'llama3': {
      requireFullRotary();
      const factor = number('factor');
      const lowFreqFactor = number('low_freq_factor');
      const highFreqFactor = number('high_freq_factor');
      if (highFreqFactor <= lowFreqFactor) {
        throw fail(
          `${field}.high_freq_factor`,
          `${field}.high_freq_factor (${highFreqFactor}) must be greater than low_freq_factor (${lowFreqFactor})`,
          fixConfig,
        );
      }
      const original = params['original_max_position_embeddings'] ?? json['original_max_position_embeddings'] ?? maxPositionEmbeddings;
      if (typeof original !== 'number' || !Number.isSafeInteger(original) || original <= 0) {
        throw fail(
          `${field}.original_max_position_embeddings`,
          `original_max_position_embeddings must be a positive integer, got ${JSON.stringify(original)}`,
          fixConfig,
        );
      }
      return {
        ropeTheta,
        ropeScaling: { type: 'llama3', factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: original },
      };
    }
    default:
      throw fail(
        typeField,
        `RoPE type ${JSON.stringify(ropeType)} (${typeField}) is not supported for ${arch} models; LoRA Studio supports ` +
          'default, linear and llama3 rotary embeddings',
        'Choose a model without this RoPE scaling (for example the base version before context extension).',
      );
  }
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function sortKeys(value: Json): Json {
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
