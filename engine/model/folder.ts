// A Hugging Face model folder → LoadPlan: the parsed config and, for every
// weight the engine needs, where its bytes are (file, absolute offset, length,
// dtype, shape). Only config files and safetensors headers are read here;
// loading the tensor data is the native side's job.
//
// Folder layout (as transformers' save_pretrained writes it):
//   config.json                     required
//   generation_config.json          optional; its eos_token_id wins
//   model.safetensors               one file, or
//   model.safetensors.index.json    {"weight_map": {tensor: shard}} + the shards
// Pickle weights (*.bin, *.pt, ...) are never opened: unpickling runs code.
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseModelConfig, type ModelConfig } from './config.ts';
import { ModelLoadError } from './errors.ts';
import { computeInvFreq } from './rope.ts';
import {
  WEIGHT_DTYPES,
  isWeightDtype,
  readSafetensorsHeader,
  type SafetensorsTensorInfo,
  type WeightDtype,
} from './safetensors.ts';

export interface TensorRef {
  name: string; // tensor name in the checkpoint
  file: string; // absolute path of the safetensors file holding it
  offset: number; // absolute byte offset of its data in that file
  byteLength: number;
  dtype: WeightDtype;
  shape: number[]; // row-major; linear weights are [out_features, in_features]
}

// One decoder layer. Shapes (H hidden, I intermediate, N heads, K kv heads, D head_dim):
//   inputNorm, postNorm [H]
//   q [N·D, H]   k, v [K·D, H]   o [H, N·D]
//   gate, up [I, H]   down [H, I]
//   qBias [N·D]  kBias, vBias [K·D]  oBias [H]  gateBias, upBias [I]  downBias [H]
//   qNorm, kNorm [D]  (qwen3)
export interface LayerRefs {
  inputNorm: TensorRef;
  postNorm: TensorRef;
  q: TensorRef;
  k: TensorRef;
  v: TensorRef;
  o: TensorRef;
  gate: TensorRef;
  up: TensorRef;
  down: TensorRef;
  qBias?: TensorRef;
  kBias?: TensorRef;
  vBias?: TensorRef;
  oBias?: TensorRef;
  gateBias?: TensorRef;
  upBias?: TensorRef;
  downBias?: TensorRef;
  qNorm?: TensorRef;
  kNorm?: TensorRef;
}

export interface LoadPlan {
  dir: string; // absolute
  config: ModelConfig;
  invFreq: Float32Array; // [head_dim / 2], see rope.ts
  files: string[]; // absolute paths of the weight files, sorted
  tensors: {
    embed: TensorRef; // [V, H]
    finalNorm: TensorRef; // [H]
    lmHead: TensorRef | null; // [V, H]; null = tied to embed
    layers: LayerRefs[]; // [numLayers]
  };
  totalBytes: number; // bytes of all tensors referenced above
}

const SAFE_WEIGHTS = 'model.safetensors';
const SAFE_WEIGHTS_INDEX = 'model.safetensors.index.json';
const PICKLE_PATTERN = /\.(bin|pt|pth|ckpt|pkl|pickle)$|^pytorch_model\.bin\.index\.json$/i;

/** The absolute path of a model folder, refused with a clear message when it is missing or a file. */
export async function checkModelFolder(dir: string): Promise<string> {
  const root = path.resolve(dir);
  const rootStat = await stat(root).catch(() => null);
  if (!rootStat) {
    throw new ModelLoadError(`The model folder ${root} does not exist. Check the path.`, root);
  }
  if (!rootStat.isDirectory()) {
    throw new ModelLoadError(`${root} is a file, not a model folder. Choose the folder that holds config.json.`, root);
  }
  return root;
}

export async function planModelLoad(dir: string): Promise<LoadPlan> {
  const root = await checkModelFolder(dir);
  const entries = new Set(await readdir(root));

  // --- config --------------------------------------------------------------
  const configFile = path.join(root, 'config.json');
  if (!entries.has('config.json')) {
    throw new ModelLoadError(
      `${root} is not a Hugging Face model folder: config.json is missing. Choose the folder that holds ` +
        'config.json and the model.safetensors weights (a snapshot folder, when the model is in the Hugging Face cache).',
      configFile,
    );
  }
  const configJson = await readJson(configFile);
  const generationFile = path.join(root, 'generation_config.json');
  const generationJson = entries.has('generation_config.json') ? await readJson(generationFile) : undefined;
  const config = parseModelConfig(configJson, configFile, generationJson);

  // --- weight files --------------------------------------------------------
  const source = await locateWeights(root, entries);
  const headers = await Promise.all(source.files.map((file) => readSafetensorsHeader(file)));
  // tensor name → where it is; a name in several shards resolves to the shard
  // the index names for it.
  const lookup = new Map<string, { file: string; info: SafetensorsTensorInfo }>();
  for (const header of headers) {
    for (const [name, info] of header.tensors) {
      const previous = lookup.get(name);
      if (!previous || source.weightMap?.get(name) === header.file) lookup.set(name, { file: header.file, info });
    }
  }

  // --- expected tensors ----------------------------------------------------
  const prefix = !lookup.has('model.embed_tokens.weight') && lookup.has('embed_tokens.weight') ? '' : 'model.';
  const c = config;
  const qOut = c.numHeads * c.headDim;
  const kvOut = c.numKvHeads * c.headDim;
  const sizes = {
    vocab: `vocab_size ${c.vocabSize}`,
    hidden: `hidden_size ${c.hiddenSize}`,
    inter: `intermediate_size ${c.intermediateSize}`,
    heads: `num_attention_heads ${c.numHeads}`,
    kvHeads: `num_key_value_heads ${c.numKvHeads}`,
    headDim: `head_dim ${c.headDim}`,
  };
  const ref = (name: string, shape: number[], because: string[]): TensorRef => {
    const found = lookup.get(name);
    if (!found) {
      throw new ModelLoadError(
        `Tensor ${name} is missing from ${source.description}, but config.json describes a ${c.arch} model that needs it. ` +
          'The weights are incomplete or do not belong to this config.json; download the model again.',
        source.describedFile,
        name,
      );
    }
    const { info, file } = found;
    const fileName = path.basename(file);
    if (!isWeightDtype(info.dtype)) {
      throw new ModelLoadError(
        `Tensor ${name} in ${fileName} has dtype ${info.dtype}, which is not supported; supported: ${WEIGHT_DTYPES.join(', ')}. ` +
          'Convert the model to bfloat16, float16 or float32 safetensors (for example with transformers: ' +
          'load it and save_pretrained with dtype=torch.bfloat16).',
        file,
        name,
      );
    }
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new ModelLoadError(
        `Tensor ${name} in ${fileName} has shape [${info.shape.join(', ')}] but config.json (${because.join(', ')}) ` +
          `implies [${shape.join(', ')}]. The weights do not match config.json; use the config.json that came with these weights.`,
        file,
        name,
      );
    }
    return { name, file, offset: info.offset, byteLength: info.byteLength, dtype: info.dtype, shape: info.shape.slice() };
  };

  const embed = ref(`${prefix}embed_tokens.weight`, [c.vocabSize, c.hiddenSize], [sizes.vocab, sizes.hidden]);
  const finalNorm = ref(`${prefix}norm.weight`, [c.hiddenSize], [sizes.hidden]);
  let lmHead: TensorRef | null = null;
  if (!c.tieWordEmbeddings) {
    if (!lookup.has('lm_head.weight')) {
      throw new ModelLoadError(
        `Tensor lm_head.weight is missing from ${source.description}, and config.json does not tie it to the embeddings ` +
          '(tie_word_embeddings is false or unset, which means false). If the model shares its input and output ' +
          'embeddings, set "tie_word_embeddings": true in config.json; otherwise download the model again.',
        source.describedFile,
        'lm_head.weight',
      );
    }
    lmHead = ref('lm_head.weight', [c.vocabSize, c.hiddenSize], [sizes.vocab, sizes.hidden]);
  }

  const layers: LayerRefs[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `${prefix}layers.${i}.`;
    const attn = `${p}self_attn.`;
    const mlp = `${p}mlp.`;
    const layer: LayerRefs = {
      inputNorm: ref(`${p}input_layernorm.weight`, [c.hiddenSize], [sizes.hidden]),
      postNorm: ref(`${p}post_attention_layernorm.weight`, [c.hiddenSize], [sizes.hidden]),
      q: ref(`${attn}q_proj.weight`, [qOut, c.hiddenSize], [sizes.hidden, sizes.heads, sizes.headDim]),
      k: ref(`${attn}k_proj.weight`, [kvOut, c.hiddenSize], [sizes.hidden, sizes.kvHeads, sizes.headDim]),
      v: ref(`${attn}v_proj.weight`, [kvOut, c.hiddenSize], [sizes.hidden, sizes.kvHeads, sizes.headDim]),
      o: ref(`${attn}o_proj.weight`, [c.hiddenSize, qOut], [sizes.hidden, sizes.heads, sizes.headDim]),
      gate: ref(`${mlp}gate_proj.weight`, [c.intermediateSize, c.hiddenSize], [sizes.hidden, sizes.inter]),
      up: ref(`${mlp}up_proj.weight`, [c.intermediateSize, c.hiddenSize], [sizes.hidden, sizes.inter]),
      down: ref(`${mlp}down_proj.weight`, [c.hiddenSize, c.intermediateSize], [sizes.hidden, sizes.inter]),
    };
    if (c.attentionBias) {
      layer.qBias = ref(`${attn}q_proj.bias`, [qOut], [sizes.heads, sizes.headDim]);
      layer.kBias = ref(`${attn}k_proj.bias`, [kvOut], [sizes.kvHeads, sizes.headDim]);
      layer.vBias = ref(`${attn}v_proj.bias`, [kvOut], [sizes.kvHeads, sizes.headDim]);
    }
    if (c.oProjBias) layer.oBias = ref(`${attn}o_proj.bias`, [c.hiddenSize], [sizes.hidden]);
    if (c.mlpBias) {
      layer.gateBias = ref(`${mlp}gate_proj.bias`, [c.intermediateSize], [sizes.inter]);
      layer.upBias = ref(`${mlp}up_proj.bias`, [c.intermediateSize], [sizes.inter]);
      layer.downBias = ref(`${mlp}down_proj.bias`, [c.hiddenSize], [sizes.hidden]);
    }
    if (c.qkNorm) {
      layer.qNorm = ref(`${attn}q_norm.weight`, [c.headDim], [sizes.headDim]);
      layer.kNorm = ref(`${attn}k_norm.weight`, [c.headDim], [sizes.headDim]);
    }
    layers.push(layer);
  }

  let totalBytes = embed.byteLength + finalNorm.byteLength + (lmHead?.byteLength ?? 0);
  for (const layer of layers) for (const t of Object.values(layer) as TensorRef[]) totalBytes += t.byteLength;

  return {
    dir: root,
    config,
    invFreq: computeInvFreq(config),
    files: source.files,
    tensors: { embed, finalNorm, lmHead, layers },
    totalBytes,
  };
}

interface WeightSource {
  files: string[]; // absolute, sorted
  weightMap: Map<string, string> | null; // tensor → absolute shard path, for sharded folders
  description: string; // how error messages name the weights
  describedFile: string; // the file errors point at: model.safetensors or the index
}

async function locateWeights(root: string, entries: Set<string>): Promise<WeightSource> {
  // transformers looks for model.safetensors first, then the index.
  if (entries.has(SAFE_WEIGHTS)) {
    const file = path.join(root, SAFE_WEIGHTS);
    return { files: [file], weightMap: null, description: SAFE_WEIGHTS, describedFile: file };
  }
  if (entries.has(SAFE_WEIGHTS_INDEX)) return readIndex(root, entries);

  const names = [...entries].sort();
  const pickles = names.filter((n) => PICKLE_PATTERN.test(n));
  if (pickles.length > 0) {
    throw new ModelLoadError(
      `${root} holds only PyTorch pickle weights (${listNames(pickles)}). LoRA Studio never opens pickle files: ` +
        'loading one can run arbitrary code. Download the model\'s safetensors version, or convert the weights ' +
        'with the convert tool of the safetensors project or, for a model you trust, in Python with ' +
        '`AutoModelForCausalLM.from_pretrained(folder).save_pretrained(new_folder)` (transformers 5 always writes ' +
        'safetensors; with transformers 4 add safe_serialization=True).',
      path.join(root, pickles[0]!),
    );
  }
  const gguf = names.filter((n) => n.toLowerCase().endsWith('.gguf'));
  if (gguf.length > 0) {
    throw new ModelLoadError(
      `${root} holds GGUF weights (${listNames(gguf)}), which LoRA Studio does not train from. ` +
        'Download the original Hugging Face version of the model (config.json + model.safetensors).',
      path.join(root, gguf[0]!),
    );
  }
  const other = names.filter((n) => n.endsWith('.safetensors'));
  throw new ModelLoadError(
    `${root} has no model weights: neither ${SAFE_WEIGHTS} nor ${SAFE_WEIGHTS_INDEX} is there` +
      (other.length > 0 ? ` (found ${listNames(other)}, which are not named as transformers names model weights)` : '') +
      '. Download the complete model folder.',
    path.join(root, SAFE_WEIGHTS),
  );
}

async function readIndex(root: string, entries: Set<string>): Promise<WeightSource> {
  const indexFile = path.join(root, SAFE_WEIGHTS_INDEX);
  const index = await readJson(indexFile);
  const weightMapJson = isObject(index) ? index['weight_map'] : undefined;
  if (!isObject(weightMapJson) || Object.keys(weightMapJson).length === 0) {
    throw new ModelLoadError(
      `${SAFE_WEIGHTS_INDEX} has no "weight_map" listing the shard of each tensor. Download the model again.`,
      indexFile,
      'weight_map',
    );
  }
  const weightMap = new Map<string, string>();
  const shards = new Set<string>();
  for (const [tensor, shard] of Object.entries(weightMapJson)) {
    const inside = typeof shard === 'string' ? path.resolve(root, shard) : null;
    if (!inside || path.dirname(inside) !== root) {
      throw new ModelLoadError(
        `${SAFE_WEIGHTS_INDEX} maps tensor ${tensor} to ${JSON.stringify(shard)}, which is not a file name in the model folder. ` +
          'Download the model again.',
        indexFile,
        tensor,
      );
    }
    weightMap.set(tensor, inside);
    shards.add(inside);
  }
  const files = [...shards].sort();
  const missing = files.filter((file) => !entries.has(path.basename(file)));
  if (missing.length > 0) {
    const names = missing.map((f) => path.basename(f));
    throw new ModelLoadError(
      `${listNames(names)} ${names.length === 1 ? 'is' : 'are'} missing: ${SAFE_WEIGHTS_INDEX} lists ` +
        `${names.length === 1 ? 'it as a shard' : 'them as shards'} of the model weights. The download is incomplete; ` +
        'download the missing files.',
      indexFile,
      names[0],
    );
  }
  return {
    files,
    weightMap,
    description: `the shards listed in ${SAFE_WEIGHTS_INDEX}`,
    describedFile: indexFile,
  };
}

async function readJson(file: string): Promise<unknown> {
  const name = path.basename(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ModelLoadError(`Cannot read ${name} (${file}): ${(err as Error).message}.`, file);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ModelLoadError(
      `${name} is not valid JSON (${(err as Error).message}). Restore the file from the original model download.`,
      file,
    );
  }
}

function listNames(names: string[]): string {
  return names.length <= 3 ? names.join(', ') : `${names.slice(0, 3).join(', ')} and ${names.length - 3} more`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
