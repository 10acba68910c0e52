// Adapters on disk in the PEFT layout, so they move in and out of the Python
// ecosystem unchanged:
//   adapter_config.json         peft_type "LORA", r, lora_alpha, lora_dropout,
//                               target_modules, use_rslora, bias, task_type, ...
//   adapter_model.safetensors   base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight  [r, in]
//                               base_model.model.model.layers.{i}.self_attn.q_proj.lora_B.weight  [out, r]
//                               (mlp.{gate,up,down}_proj for the MLP)
//
// Which modules an adapter adapts ("sites": a layer and a projection) follows
// PEFT's own matching (tuners_utils.check_target_module_exists) over the module
// names transformers gives a *ForCausalLM ("model.layers.3.mlp.up_proj"):
//   target_modules a list   a module is selected when its name equals an entry
//                           or ends with "." + entry; layers_to_transform /
//                           layers_pattern then keep only the listed layers
//   target_modules a string a regular expression that must match the whole name
//                           ("all-linear": the seven projections)
//   exclude_modules         the same two forms, removing modules
// The engine holds one rank and one alpha per adapter, on every layer of each
// target projection. A PEFT adapter on a subset of layers loads with A = B = 0
// at the other sites: their update is exactly zero, and so are their gradients
// and AdamW steps, so training keeps them at zero; savePeftAdapter leaves such
// all-zero sites out again. Everything else PEFT can express that the engine
// cannot represent exactly is refused, naming adapter_config.json and the field.
import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { PROJECTIONS, type EngineModel, type Projection } from '../api.ts';
import { writeFileAtomic } from '../model/atomic.ts';
import type { ModelConfig } from '../model/config.ts';
import { ModelLoadError } from '../model/errors.ts';
import { bf16BitsToF32, f16BitsToF32 } from '../model/half.ts';
import { readSafetensorsHeader, writeSafetensors, type SafetensorsTensorInfo } from '../model/safetensors.ts';

export const PEFT_CONFIG_FILE = 'adapter_config.json';
export const PEFT_WEIGHTS_FILE = 'adapter_model.safetensors';
/** The PEFT release whose adapter_config.json fields savePeftAdapter writes. */
export const PEFT_FORMAT_VERSION = '0.21.2';

// ---- module names ----------------------------------------------------------------

export interface PeftSite {
  layer: number;
  proj: Projection;
}

function blockOf(proj: Projection): 'self_attn' | 'mlp' {
  return proj === 'gate_proj' || proj === 'up_proj' || proj === 'down_proj' ? 'mlp' : 'self_attn';
}

/** transformers' module name of a projection, e.g. "model.layers.0.self_attn.q_proj". */
export function peftModuleName(layer: number, proj: Projection): string {
  return `model.layers.${layer}.${blockOf(proj)}.${proj}`;
}

export function peftKey(layer: number, proj: Projection, which: 'A' | 'B'): string {
  return `base_model.model.${peftModuleName(layer, proj)}.lora_${which}.weight`;
}

// Every name model.named_modules() gives a Llama/Mistral/Qwen2/Qwen3
// *ForCausalLM, in that order ("" is the model itself).
function modelModuleNames(numLayers: number, qkNorm: boolean): string[] {
  const names = ['', 'model', 'model.embed_tokens', 'model.layers'];
  for (let i = 0; i < numLayers; ++i) {
    const p = `model.layers.${i}`;
    names.push(p, `${p}.self_attn`, ...['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((n) => `${p}.self_attn.${n}`));
    if (qkNorm) names.push(`${p}.self_attn.q_norm`, `${p}.self_attn.k_norm`);
    names.push(`${p}.mlp`, ...['gate_proj', 'up_proj', 'down_proj'].map((n) => `${p}.mlp.${n}`), `${p}.mlp.act_fn`);
    names.push(`${p}.input_layernorm`, `${p}.post_attention_layernorm`);
  }
  names.push('model.norm', 'model.rotary_emb', 'lm_head');
  return names;
}

const SITE_NAME = /^model\.layers\.(\d+)\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$/;

function siteOf(moduleName: string): PeftSite | null {
  const m = SITE_NAME.exec(moduleName);
  if (!m || blockOf(m[3] as Projection) !== m[2]) return null;
  return { layer: Number(m[1]), proj: m[3] as Projection };
}

// ---- adapter_config.json ---------------------------------------------------------

export interface PeftAdapterConfig {
  rank: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  /** alpha / rank, or alpha / sqrt(rank) with rsLoRA. */
  scale: number;
  /** Projections adapted in at least one layer, in PROJECTIONS order. */
  targets: Projection[];
  /** Layers with at least one adapted projection, ascending. */
  layers: number[];
  /** Every adapted module, layer by layer, in PROJECTIONS order within a layer. */
  sites: PeftSite[];
  /** Layer count the sites were resolved for: the base model's, else the adapter file's. */
  numLayers: number;
  baseModel: string | null;
}

type Json = Record<string, unknown>;

// Fields that never change what a saved adapter computes: bookkeeping, or
// settings used only when PEFT creates a fresh adapter (the init value itself
// is checked), or fan_in_fan_out, which PEFT resets to false on nn.Linear.
const IGNORED_FIELDS = new Set([
  'peft_version', 'auto_mapping', 'revision', 'inference_mode', 'megatron_core', 'qalora_group_size', 'loftq_config',
  'eva_config', 'corda_config', 'lora_ga_config', 'ensure_weight_tying', 'runtime_config', 'fan_in_fan_out',
  'velora_config', // changes only how backward stores activations
]);
// Fields handled below.
const READ_FIELDS = new Set([
  'peft_type', 'task_type', 'base_model_name_or_path', 'r', 'lora_alpha', 'lora_dropout', 'use_rslora', 'target_modules',
  'exclude_modules', 'layers_to_transform', 'layers_pattern', 'rank_pattern', 'alpha_pattern', 'bias', 'modules_to_save',
  'init_lora_weights',
]);
// Features whose forward pass or module set differs from plain LoRA: refused when set.
const REFUSED_FEATURES: Record<string, string> = {
  use_dora: 'a DoRA adapter (a learned magnitude per output)',
  use_qalora: 'a QA-LoRA adapter (pooled inputs for a GPTQ base)',
  lora_bias: 'a LoRA adapter with a bias on lora_B',
  alora_invocation_tokens: 'an activated LoRA (aLoRA), applied only after its invocation tokens',
  layer_replication: 'an adapter for a model with replicated layers',
  trainable_token_indices: 'an adapter that also trains embedding rows',
  target_parameters: 'an adapter on raw parameters (target_parameters)',
  megatron_config: 'an adapter for Megatron parallel layers',
  use_bdlora: 'a block-diagonal LoRA (BD-LoRA)',
  arrow_config: 'an Arrow routing adapter',
  kasa_config: 'a KaSA adapter',
  monteclora_config: 'a MonteCLoRA adapter',
};
const MERGE_ADVICE =
  'Merge it into the base model in Python (PEFT: PeftModel.from_pretrained(base, folder).merge_and_unload().save_pretrained(out)) ' +
  'and use the merged model as the base, or train a plain LoRA adapter.';

function isUnset(v: unknown): boolean {
  return (
    v === undefined || v === null || v === false ||
    (Array.isArray(v) && v.length === 0) ||
    (typeof v === 'object' && v !== null && Object.keys(v).length === 0)
  );
}

interface ParsedConfig {
  rank: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  baseModel: string | null;
  targets: string[] | RegExp; // 'all-linear' expanded to the projection names
  targetsText: string; // as written, for messages
  exclude: string[] | RegExp | null;
  layersToTransform: number[] | null;
  layersPattern: string[] | null;
  rankPattern: Array<[RegExp, number, string]>;
  alphaPattern: Array<[RegExp, number, string]>;
  modulesToSave: string[];
  bias: 'none' | 'all' | 'lora_only';
}

async function readConfigJson(dir: string): Promise<{ file: string; json: Json }> {
  const file = path.join(dir, PEFT_CONFIG_FILE);
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch {
    throw new ModelLoadError(
      `${dir} is not a PEFT adapter folder: ${PEFT_CONFIG_FILE} is missing. Choose the folder that holds ${PEFT_CONFIG_FILE} and ${PEFT_WEIGHTS_FILE}.`,
      file,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    throw new ModelLoadError(`${PEFT_CONFIG_FILE} is not valid JSON (${(e as Error).message}). Restore it from the adapter's original files.`, file);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new ModelLoadError(`${PEFT_CONFIG_FILE} is not a JSON object. Restore it from the adapter's original files.`, file);
  return { file, json: json as Json };
}

// A Python `re` pattern as a JavaScript RegExp: named groups are spelled
// (?P<name>...) and (?P=name) there; \A and \Z anchor the string.
function pythonRegex(pattern: string, anchored: 'full' | 'start', bad: (why: string) => Error): RegExp {
  const js = pattern.replace(/\(\?P</g, '(?<').replace(/\(\?P=(\w+)\)/g, '\\k<$1>').replace(/\\A/g, '^').replace(/\\Z/g, '$');
  if (/\(\?[aiLmsux]+[):]/.test(pattern)) throw bad(`uses an inline flag group, which LoRA Studio does not read; write the pattern without it.`);
  try {
    return new RegExp(anchored === 'full' ? `^(?:${js})$` : `^(?:${js})`);
  } catch (e) {
    throw bad(`is not a regular expression LoRA Studio can read (${(e as Error).message}); write it as a list of module names instead.`);
  }
}

function parseConfig(file: string, j: Json): ParsedConfig {
  const bad = (field: string, why: string) => new ModelLoadError(`${PEFT_CONFIG_FILE}: ${field} ${why}`, file, field);

  if (j.peft_type !== 'LORA')
    throw bad('peft_type', `is ${JSON.stringify(j.peft_type ?? null)}: this is not a LoRA adapter, and LoRA Studio loads only LoRA adapters (peft_type "LORA"). Train a LoRA adapter, or use the adapter in Python.`);
  if (j.task_type != null && j.task_type !== 'CAUSAL_LM')
    throw bad('task_type', `is ${JSON.stringify(j.task_type)}: the adapter is for a ${String(j.task_type)} model, and LoRA Studio loads adapters for causal language models ("CAUSAL_LM").`);
  for (const [key, what] of Object.entries(REFUSED_FEATURES))
    if (!isUnset(j[key])) throw bad(key, `is ${JSON.stringify(j[key])}: this is ${what}, which LoRA Studio cannot apply. ${MERGE_ADVICE}`);
  for (const [key, value] of Object.entries(j))
    if (!READ_FIELDS.has(key) && !IGNORED_FIELDS.has(key) && !(key in REFUSED_FEATURES) && !isUnset(value))
      throw bad(key, `is ${JSON.stringify(value)}: LoRA Studio does not know this setting (a newer PEFT feature?), so it cannot tell whether it changes the adapter. ${MERGE_ADVICE}`);

  const r = j.r ?? 8;
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1 || r > 4096) throw bad('r', `is ${JSON.stringify(r)}; it must be an integer from 1 to 4096.`);
  const alpha = j.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !(alpha > 0) || !Number.isFinite(alpha))
    throw bad('lora_alpha', `is ${JSON.stringify(alpha)}; it must be a positive number (an adapter with lora_alpha 0 changes nothing).`);
  const dropout = j.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || dropout < 0 || dropout > 0.99) throw bad('lora_dropout', `is ${JSON.stringify(dropout)}; it must be in [0, 0.99].`);
  const rslora = j.use_rslora ?? false;
  if (typeof rslora !== 'boolean') throw bad('use_rslora', `is ${JSON.stringify(rslora)}; it must be true or false.`);

  const bias = j.bias ?? 'none';
  if (bias !== 'none' && bias !== 'all' && bias !== 'lora_only') throw bad('bias', `is ${JSON.stringify(bias)}; PEFT writes "none", "all" or "lora_only".`);

  const init = j.init_lora_weights ?? true;
  if (typeof init === 'string' && /^(pissa(_niter_\d+)?|olora|corda|lora_ga)$/.test(init))
    throw bad('init_lora_weights', `is "${init}": this initialisation changed the base model's weights (it subtracts the initial adapter from them), so the adapter does not fit the original base. Convert it in Python into a plain LoRA adapter for the original base: PEFT's save_pretrained(out, path_initial_model_for_weight_conversion=<the saved initial adapter>).`);
  if (init === 'loftq')
    throw bad('init_lora_weights', `is "loftq": the adapter belongs to a LoftQ-quantized copy of the base, not to the original weights. ${MERGE_ADVICE}`);
  if (!(typeof init === 'boolean' || ['gaussian', 'eva', 'orthogonal', 'mica'].includes(init as string)))
    throw bad('init_lora_weights', `is ${JSON.stringify(init)}, which LoRA Studio does not know; PEFT writes true, false, "gaussian", "eva", "orthogonal", "mica", "pissa", "olora", "corda", "loftq" or "lora_ga".`);

  const stringList = (field: string, v: unknown): string[] => {
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw bad(field, `is ${JSON.stringify(v)}; it must be a list of module names or one regular expression.`);
    return v as string[];
  };

  // target_modules: null means PEFT's default for the architecture, which is
  // q_proj and v_proj for every architecture the engine loads.
  const rawTargets = j.target_modules ?? ['q_proj', 'v_proj'];
  let targets: string[] | RegExp;
  if (typeof rawTargets === 'string') {
    targets = rawTargets.toLowerCase() === 'all-linear'
      ? [...PROJECTIONS]
      : pythonRegex(rawTargets, 'full', (why) => bad('target_modules', `"${rawTargets}" ${why}`));
  } else {
    targets = stringList('target_modules', rawTargets);
    if (targets.length === 0) throw bad('target_modules', 'is an empty list: the adapter adapts no module. Check the adapter folder.');
  }
  const rawExclude = j.exclude_modules ?? null;
  const exclude = rawExclude === null ? null
    : typeof rawExclude === 'string' ? pythonRegex(rawExclude, 'full', (why) => bad('exclude_modules', `"${rawExclude}" ${why}`))
      : stringList('exclude_modules', rawExclude);

  let layersToTransform: number[] | null = null;
  const ltt = j.layers_to_transform ?? null;
  if (ltt !== null) {
    const list = typeof ltt === 'number' ? [ltt] : ltt;
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0))
      throw bad('layers_to_transform', `is ${JSON.stringify(ltt)}; it must be a layer index or a list of layer indices.`);
    if (typeof rawTargets === 'string')
      throw bad('layers_to_transform', 'is set while target_modules is a string; PEFT refuses that combination too. Select the layers in the target_modules regular expression instead.');
    layersToTransform = list.length === 0 ? null : (list as number[]);
  }
  let layersPattern: string[] | null = null;
  const lp = j.layers_pattern ?? null;
  if (lp !== null) {
    // PEFT treats an empty pattern ('' or []) as "any layer pattern"
    layersPattern = (typeof lp === 'string' ? [lp] : stringList('layers_pattern', lp)).filter((p) => p.length > 0);
    if (typeof rawTargets === 'string') throw bad('layers_pattern', 'is set while target_modules is a string; PEFT refuses that combination too.');
    if (layersPattern.length > 0 && ltt === null) throw bad('layers_pattern', 'is set without layers_to_transform; PEFT refuses that too. Add layers_to_transform or remove layers_pattern.');
  }

  const patterns = (field: string): Array<[RegExp, number, string]> => {
    const v = j[field] ?? {};
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(field, `is ${JSON.stringify(v)}; it must map module names to numbers.`);
    return Object.entries(v).map(([key, value]) => {
      if (typeof value !== 'number' || !(value > 0)) throw bad(field, `maps "${key}" to ${JSON.stringify(value)}; values must be positive numbers.`);
      // PEFT's get_pattern_key: re.match(rf"(.*\.)?({key})$", module name)
      return [pythonRegex(`(.*\\.)?(${key})$`, 'start', (why) => bad(field, `key "${key}" ${why}`)), value, key];
    });
  };

  const modulesToSave = j.modules_to_save == null ? [] : stringList('modules_to_save', j.modules_to_save);
  const baseModel = typeof j.base_model_name_or_path === 'string' ? j.base_model_name_or_path : null;
  return {
    rank: r, alpha, dropout, rslora, baseModel, targets, targetsText: JSON.stringify(rawTargets), exclude,
    layersToTransform, layersPattern, rankPattern: patterns('rank_pattern'), alphaPattern: patterns('alpha_pattern'),
    modulesToSave, bias,
  };
}

// tuners_utils.check_target_module_exists for one module name.
function isTargeted(c: ParsedConfig, key: string): boolean {
  if (c.exclude) {
    if (c.exclude instanceof RegExp ? c.exclude.test(key) : c.exclude.some((e) => key === e || key.endsWith(`.${e}`))) return false;
  }
  if (c.targets instanceof RegExp) return c.targets.test(key);
  if (c.targets.includes(key)) return true;
  if (!c.targets.some((t) => key.endsWith(`.${t}`))) return false;
  if (!c.layersToTransform) return true;
  let m: RegExpExecArray | null = null;
  if (!c.layersPattern || c.layersPattern.length === 0) m = /^.*?\.[^.]*\.(\d+)\./.exec(key);
  else for (const p of c.layersPattern) if ((m = new RegExp(`^(?:^|.*?\\.)${p}\\.(\\d+)\\.`).exec(key))) break;
  return m !== null && c.layersToTransform.includes(Number(m[1]));
}

function patternValue(patterns: Array<[RegExp, number, string]>, key: string, fallback: number): [number, string | null] {
  for (const [re, value, text] of patterns) if (re.test(key)) return [value, text];
  return [fallback, null];
}

/** The (rank, alpha) of every selected site must agree: the engine has one of each per adapter. */
function resolveSites(file: string, c: ParsedConfig, numLayers: number, qkNorm: boolean): { sites: PeftSite[]; rank: number; alpha: number } {
  const bad = (field: string, why: string) => new ModelLoadError(`${PEFT_CONFIG_FILE}: ${field} ${why}`, file, field);
  const sites: PeftSite[] = [];
  let first: { rank: number; alpha: number; key: string } | null = null;
  for (const key of modelModuleNames(numLayers, qkNorm)) {
    if (c.modulesToSave.some((m) => new RegExp(`(^|.*\\.)${m}($|\\..*)`).test(key))) {
      if (c.modulesToSave.some((m) => new RegExp(`(^|.*\\.)${m}$`).test(key)))
        throw bad('modules_to_save', `lists ${key}: the adapter carries a full trained copy of that module, which LoRA Studio cannot apply. ${MERGE_ADVICE}`);
      continue;
    }
    if (!isTargeted(c, key)) continue;
    const site = siteOf(key);
    if (!site)
      throw bad('target_modules', `(${c.targetsText}) selects the module "${key || '(the whole model)'}", which is not one of the projections LoRA Studio adapts (${PROJECTIONS.join(', ')}). Train or convert the adapter for those projections only.`);
    const [rank, rankKey] = patternValue(c.rankPattern, key, c.rank);
    const [alpha, alphaKey] = patternValue(c.alphaPattern, key, c.alpha);
    if (!Number.isInteger(rank)) throw bad('rank_pattern', `gives ${key} the rank ${rank}; ranks are integers.`);
    if (!first) first = { rank, alpha, key };
    else if (first.rank !== rank || first.alpha !== alpha) {
      const field = first.rank !== rank ? 'rank_pattern' : 'alpha_pattern';
      const what = field === 'rank_pattern' ? `rank ${rank} (key "${rankKey ?? 'r'}")` : `alpha ${alpha} (key "${alphaKey ?? 'lora_alpha'}")`;
      const was = field === 'rank_pattern' ? `rank ${first.rank}` : `alpha ${first.alpha}`;
      throw bad(field, `gives ${key} ${what} but ${first.key} ${was}; LoRA Studio holds one rank and one alpha per adapter. ${MERGE_ADVICE}`);
    }
    sites.push(site);
  }
  if (!first) {
    const plainName = /^"[\w.]+"$/.test(c.targetsText)
      ? ` PEFT reads a string as a regular expression that must match a whole module name such as ${peftModuleName(0, 'q_proj')}; to adapt every ${c.targetsText.slice(1, -1)} write it as a list: [${c.targetsText}].`
      : ' The adapter belongs to another kind of model.';
    throw bad('target_modules', `(${c.targetsText}${c.layersToTransform ? `, layers_to_transform ${JSON.stringify(c.layersToTransform)}` : ''}) selects no module of this ${numLayers}-layer model; PEFT would refuse it too.${plainName}`);
  }
  return { sites, rank: first.rank, alpha: first.alpha };
}

// ---- adapter_model.safetensors ---------------------------------------------------

const LORA_KEY = /^base_model\.model\.(.+)\.lora_(A|B)(?:\.default)?\.weight$/;

/** An adapter folder checked against a base model: its config and where each tensor is. */
export interface PeftAdapterFiles {
  dir: string;
  config: PeftAdapterConfig;
  weightsFile: string;
  /** Tensor of (layer, proj, 'A' | 'B') at each site; F32, F16 or BF16. */
  tensors: Map<string, SafetensorsTensorInfo & { name: string }>;
}

export function siteKey(layer: number, proj: Projection, which: 'A' | 'B'): string {
  return `${layer}.${proj}.${which}`;
}

interface BaseShape {
  numLayers: number;
  qkNorm: boolean;
  shapes: Record<Projection, [number, number]> | null; // [out, in] of each projection
}

function baseShape(c: ModelConfig): BaseShape {
  const qd = c.numHeads * c.headDim;
  const kvd = c.numKvHeads * c.headDim;
  return {
    numLayers: c.numLayers,
    qkNorm: c.qkNorm,
    shapes: {
      q_proj: [qd, c.hiddenSize], k_proj: [kvd, c.hiddenSize], v_proj: [kvd, c.hiddenSize], o_proj: [c.hiddenSize, qd],
      gate_proj: [c.intermediateSize, c.hiddenSize], up_proj: [c.intermediateSize, c.hiddenSize], down_proj: [c.hiddenSize, c.intermediateSize],
    },
  };
}

/**
 * Reads an adapter folder and checks it completely: every adapter_config.json
 * field, the modules it selects in `base` (or, without a base, in a model with
 * as many layers as the adapter file holds), and every tensor's name, dtype and
 * shape. Reads only the config and the safetensors header.
 */
export async function openPeftAdapter(dir: string, base?: ModelConfig): Promise<PeftAdapterFiles> {
  const root = path.resolve(dir);
  const { file: configFile, json } = await readConfigJson(root);
  const parsed = parseConfig(configFile, json);
  const weightsFile = path.join(root, PEFT_WEIGHTS_FILE);
  if (!(await stat(weightsFile).catch(() => null))) {
    const pickle = await stat(path.join(root, 'adapter_model.bin')).catch(() => null);
    throw new ModelLoadError(
      pickle
        ? `${root} holds adapter_model.bin, a PyTorch pickle, and no ${PEFT_WEIGHTS_FILE}. LoRA Studio never opens pickle files: loading one can run code. ` +
            'For an adapter you trust, convert it in Python: PeftModel.from_pretrained(base, folder).save_pretrained(out) writes safetensors.'
        : `${PEFT_WEIGHTS_FILE} is missing from ${root}; the adapter folder is incomplete. Copy the whole adapter folder again.`,
      weightsFile,
    );
  }
  const header = await readSafetensorsHeader(weightsFile);
  const bad = (key: string, why: string) => new ModelLoadError(`${PEFT_WEIGHTS_FILE}: tensor ${key} ${why}`, weightsFile, key);

  let shape: BaseShape;
  if (base) shape = baseShape(base);
  else {
    let layers = 0;
    for (const key of header.tensors.keys()) {
      const m = /^base_model\.model\.model\.layers\.(\d+)\./.exec(key);
      if (m) layers = Math.max(layers, Number(m[1]) + 1);
    }
    shape = { numLayers: layers, qkNorm: false, shapes: null };
  }
  const { sites, rank, alpha } = resolveSites(configFile, parsed, shape.numLayers, shape.qkNorm);
  const wanted = new Set(sites.map((s) => `${s.layer}.${s.proj}`));

  const tensors = new Map<string, SafetensorsTensorInfo & { name: string }>();
  for (const [key, info] of header.tensors) {
    const m = LORA_KEY.exec(key);
    if (!m) {
      if (key.endsWith('.bias') && parsed.bias !== 'none')
        throw new ModelLoadError(
          `${PEFT_CONFIG_FILE}: bias is "${parsed.bias}" and ${PEFT_WEIGHTS_FILE} holds the trained bias ${key}; LoRA Studio keeps the base model's biases frozen and cannot apply it. ${MERGE_ADVICE}`,
          configFile, 'bias',
        );
      const what = key.includes('lora_magnitude_vector') ? 'is a DoRA magnitude vector'
        : key.includes('modules_to_save') ? 'is a trained copy of a whole module (modules_to_save)'
          : key.includes('lora_embedding') ? 'adapts an embedding' : 'is not a LoRA A or B matrix';
      throw bad(key, `${what}; LoRA Studio cannot apply it. ${MERGE_ADVICE}`);
    }
    const moduleName = m[1]!;
    const which = m[2] as 'A' | 'B';
    const layerMatch = /^model\.layers\.(\d+)\./.exec(moduleName);
    if (layerMatch && Number(layerMatch[1]) >= shape.numLayers)
      throw bad(key, `(shape [${info.shape.join(', ')}]) is for layer ${layerMatch[1]}, but the base model has ${shape.numLayers} layers (0-${shape.numLayers - 1}): the adapter was trained for a different base model. Choose the base model it was made for.`);
    const site = siteOf(moduleName);
    if (!site) throw bad(key, `adapts the module ${moduleName}, which is not one of the projections LoRA Studio adapts (${PROJECTIONS.join(', ')}). ${MERGE_ADVICE}`);
    if (!wanted.has(`${site.layer}.${site.proj}`))
      throw bad(key, `adapts ${moduleName}, which ${PEFT_CONFIG_FILE} (target_modules ${parsed.targetsText}) does not select. The two files do not belong together; copy the adapter folder again.`);
    if (!['F32', 'F16', 'BF16'].includes(info.dtype)) throw bad(key, `has dtype ${info.dtype}; supported: F32, F16, BF16. Save the adapter in float32.`);
    const out = shape.shapes?.[site.proj][0];
    const inp = shape.shapes?.[site.proj][1];
    const want = which === 'A' ? [rank, inp ?? info.shape[1]] : [out ?? info.shape[0], rank];
    if (info.shape.length !== 2 || info.shape[0] !== want[0] || info.shape[1] !== want[1])
      throw bad(key, `has shape [${info.shape.join(', ')}] but ${base ? 'this base model' : `${PEFT_CONFIG_FILE} (r = ${rank})`} needs [${want.join(', ')}] ` +
        `(lora_${which} is ${which === 'A' ? '[r, in_features]' : '[out_features, r]'}; r = ${rank}): the adapter was trained for a different base model. Choose the base model it was made for.`);
    const k = siteKey(site.layer, site.proj, which);
    if (tensors.has(k)) throw bad(key, 'appears twice (with and without the adapter name). Save the adapter again.');
    tensors.set(k, { ...info, name: key });
  }
  for (const s of sites)
    for (const which of ['A', 'B'] as const)
      if (!tensors.has(siteKey(s.layer, s.proj, which)))
        throw bad(peftKey(s.layer, s.proj, which), `is missing, but ${PEFT_CONFIG_FILE} (target_modules ${parsed.targetsText}) selects ${peftModuleName(s.layer, s.proj)}. The adapter is incomplete or for a different base model.`);

  const targets = PROJECTIONS.filter((p) => sites.some((s) => s.proj === p));
  const layers = [...new Set(sites.map((s) => s.layer))].sort((a, b) => a - b);
  return {
    dir: root,
    weightsFile,
    tensors,
    config: {
      rank, alpha, dropout: parsed.dropout, rslora: parsed.rslora,
      scale: parsed.rslora ? alpha / Math.sqrt(rank) : alpha / rank,
      targets, layers, sites, numLayers: shape.numLayers, baseModel: parsed.baseModel,
    },
  };
}

/** Reads and checks adapter_config.json (and the weights' names and shapes); refuses what the engine cannot apply exactly. */
export async function readPeftConfig(dir: string, base?: ModelConfig): Promise<PeftAdapterConfig> {
  return (await openPeftAdapter(dir, base)).config;
}

/** One adapter tensor as fp32 values (row-major), read from its own byte range. */
export async function readPeftTensor(file: string, info: SafetensorsTensorInfo): Promise<Float32Array> {
  const bytes = Buffer.alloc(info.byteLength);
  const handle = await open(file, 'r');
  try {
    let done = 0;
    while (done < bytes.length) {
      const { bytesRead } = await handle.read(bytes, done, bytes.length - done, info.offset + done);
      if (bytesRead === 0) throw new ModelLoadError(`${path.basename(file)} ended early; copy the adapter again.`, file);
      done += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return toFloat32(info.dtype, bytes);
}

export function toFloat32(dtype: string, bytes: Buffer): Float32Array {
  if (dtype === 'F32') {
    const out = new Float32Array(bytes.length / 4);
    for (let i = 0; i < out.length; ++i) out[i] = bytes.readFloatLE(i * 4);
    return out;
  }
  const widen = dtype === 'BF16' ? bf16BitsToF32 : f16BitsToF32;
  const out = new Float32Array(bytes.length / 2);
  for (let i = 0; i < out.length; ++i) out[i] = widen(bytes.readUInt16LE(i * 2));
  return out;
}

// ---- load and save -----------------------------------------------------------------

/** Loads a PEFT adapter folder into `model` under `name`. Shapes must fit the base. */
export async function loadPeftAdapter(model: EngineModel, dir: string, name: string): Promise<PeftAdapterConfig> {
  const a = await openPeftAdapter(dir, model.config);
  const cfg = a.config;
  const values = new Map<string, Float32Array>();
  for (const [k, info] of a.tensors) values.set(k, await readPeftTensor(a.weightsFile, info));
  model.addAdapter(name, { rank: cfg.rank, alpha: cfg.alpha, dropout: cfg.dropout, rslora: cfg.rslora, targets: cfg.targets });
  try {
    const shapes = baseShape(model.config).shapes!;
    for (let layer = 0; layer < model.config.numLayers; ++layer)
      for (const proj of cfg.targets) {
        const [out, inp] = shapes[proj];
        // Sites the adapter does not have: A = B = 0, an exactly-zero update that training keeps at zero.
        model.writeAdapterTensor(name, layer, proj, 'A', values.get(siteKey(layer, proj, 'A')) ?? new Float32Array(cfg.rank * inp));
        model.writeAdapterTensor(name, layer, proj, 'B', values.get(siteKey(layer, proj, 'B')) ?? new Float32Array(out * cfg.rank));
      }
  } catch (e) {
    model.removeAdapter(name);
    throw e;
  }
  return cfg;
}

/**
 * target_modules (+ layers_to_transform) selecting exactly `sites`, in the
 * simplest form: the projection names for every layer; the names plus
 * layers_to_transform when every projection has the same layers; otherwise a
 * regular expression over the module names.
 */
export function peftTargetsFor(sites: readonly PeftSite[], numLayers: number): { targetModules: string[] | string; layersToTransform: number[] | null } {
  const byProj = new Map<Projection, number[]>();
  for (const s of sites) byProj.set(s.proj, [...(byProj.get(s.proj) ?? []), s.layer]);
  const names = [...byProj.keys()].sort();
  const layerSets = [...byProj.values()].map((l) => [...new Set(l)].sort((a, b) => a - b).join(','));
  if (layerSets.every((l) => l === layerSets[0])) {
    const layers = layerSets[0]!.split(',').map(Number);
    return { targetModules: names, layersToTransform: layers.length === numLayers ? null : layers };
  }
  const perLayer = new Map<number, Projection[]>();
  for (const s of sites) perLayer.set(s.layer, [...(perLayer.get(s.layer) ?? []), s.proj]);
  const alternatives = [...perLayer.entries()].sort((a, b) => a[0] - b[0]).map(([layer, projs]) => {
    const attn = projs.filter((p) => blockOf(p) === 'self_attn').sort();
    const mlp = projs.filter((p) => blockOf(p) === 'mlp').sort();
    const parts = [...(attn.length ? [`self_attn\\.(?:${attn.join('|')})`] : []), ...(mlp.length ? [`mlp\\.(?:${mlp.join('|')})`] : [])];
    return `${layer}\\.(?:${parts.join('|')})`;
  });
  return { targetModules: `model\\.layers\\.(?:${alternatives.join('|')})`, layersToTransform: null };
}

/** adapter_config.json as PEFT writes it: every LoraConfig field, defaults where ours has none. */
export function peftConfigJson(opts: {
  rank: number; alpha: number; dropout: number; rslora: boolean; baseModel: string | null;
  targetModules: string[] | string; layersToTransform: number[] | null;
}): Record<string, unknown> {
  return {
    alora_invocation_tokens: null, alpha_pattern: {}, arrow_config: null, auto_mapping: null,
    base_model_name_or_path: opts.baseModel, bias: 'none', corda_config: null, ensure_weight_tying: false, eva_config: null,
    exclude_modules: null, fan_in_fan_out: false, inference_mode: true, init_lora_weights: true, kasa_config: null,
    layer_replication: null, layers_pattern: null, layers_to_transform: opts.layersToTransform, loftq_config: {},
    lora_alpha: opts.alpha, lora_bias: false, lora_dropout: opts.dropout, lora_ga_config: null, megatron_config: null,
    megatron_core: 'megatron.core', modules_to_save: null, monteclora_config: null, peft_type: 'LORA',
    peft_version: PEFT_FORMAT_VERSION, qalora_group_size: 16, r: opts.rank, rank_pattern: {}, revision: null,
    target_modules: opts.targetModules, target_parameters: null, task_type: 'CAUSAL_LM', trainable_token_indices: null,
    use_bdlora: null, use_dora: false, use_qalora: false, use_rslora: opts.rslora, velora_config: null,
  };
}

// json.dumps(obj, indent=2, sort_keys=True) as PEFT writes it: floats keep a
// decimal point (lora_dropout 0.0), non-ASCII is escaped.
const FLOAT_FIELDS = new Set(['lora_dropout']);
export function pythonJson(value: unknown, indent = '', isFloat = false): string {
  if (typeof value === 'number' && isFloat && Number.isInteger(value)) return `${value}.0`;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    const inner = indent + '  ';
    return `[\n${value.map((v) => inner + pythonJson(v, inner)).join(',\n')}\n${indent}]`;
  }
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort();
    if (keys.length === 0) return '{}';
    const inner = indent + '  ';
    const rec = value as Record<string, unknown>;
    return `{\n${keys.map((k) => `${inner}${pythonJson(k)}: ${pythonJson(rec[k], inner, FLOAT_FIELDS.has(k))}`).join(',\n')}\n${indent}}`;
  }
  const s = JSON.stringify(value) ?? 'null';
  return typeof value === 'string' ? s.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : s;
}

function allZero(a: Float32Array): boolean {
  for (let i = 0; i < a.length; ++i) if (a[i] !== 0) return false;
  return true;
}

/**
 * Writes adapter `name` of `model` as a PEFT folder: the two files PEFT writes,
 * weights in F32 with PEFT's key names. Sites whose A and B are both all zero
 * (the inert sites loadPeftAdapter fills in) are left out, with target_modules
 * selecting the rest.
 *
 * Atomicity: each file is written atomically (temp file, fsync, rename); an
 * existing adapter_config.json is removed first and the new one is written
 * last, so at every instant the folder holds the old adapter, a folder without
 * a config (refused as incomplete), or the new adapter; never a new config
 * over old weights.
 */
export async function savePeftAdapter(model: EngineModel, name: string, dir: string, opts: { baseModel?: string } = {}): Promise<void> {
  const info = model.adapterInfo(name);
  const all: Array<{ site: PeftSite; A: Float32Array; B: Float32Array }> = [];
  for (let layer = 0; layer < model.config.numLayers; ++layer)
    for (const proj of info.targets)
      all.push({ site: { layer, proj }, A: model.readAdapterTensor(name, layer, proj, 'A'), B: model.readAdapterTensor(name, layer, proj, 'B') });
  let kept = all.filter((t) => !(allZero(t.A) && allZero(t.B)));
  if (kept.length === 0) kept = all;
  const tensors = kept.flatMap(({ site, A, B }) => [
    { name: peftKey(site.layer, site.proj, 'A'), dtype: 'F32' as const, shape: [info.rank, A.length / info.rank], data: A },
    { name: peftKey(site.layer, site.proj, 'B'), dtype: 'F32' as const, shape: [B.length / info.rank, info.rank], data: B },
  ]);
  const { targetModules, layersToTransform } = peftTargetsFor(kept.map((t) => t.site), model.config.numLayers);
  const config = peftConfigJson({
    rank: info.rank, alpha: info.alpha, dropout: info.dropout, rslora: info.rslora,
    baseModel: opts.baseModel ?? null, targetModules, layersToTransform,
  });
  const root = path.resolve(dir);
  await mkdir(root, { recursive: true });
  await unlink(path.join(root, PEFT_CONFIG_FILE)).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
  await writeSafetensors(path.join(root, PEFT_WEIGHTS_FILE), tensors, { format: 'pt' });
  await writeFileAtomic(path.join(root, PEFT_CONFIG_FILE), [Buffer.from(pythonJson(config) + '\n')]);
}
