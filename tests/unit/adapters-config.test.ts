// adapter_config.json in every form PEFT writes: the modules each form selects
// (checked against PEFT's own choice on the golden adapters made by
// scripts/golden/make_peft_golden.py), and a clear refusal, naming the file
// and field, of everything the engine cannot apply exactly.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EngineModel, PROJECTIONS, type Projection } from '../../engine/api.ts';
import {
  PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, loadPeftAdapter, peftConfigJson, peftKey, peftModuleName, readPeftConfig,
} from '../../engine/adapters/peft.ts';
import type { ModelConfig } from '../../engine/model/config.ts';
import { ModelLoadError } from '../../engine/model/errors.ts';
import { planModelLoad } from '../../engine/model/folder.ts';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../engine/model/half.ts';
import { writeSafetensors, type TensorToWrite } from '../../engine/model/safetensors.ts';
import { rng, tempDir, tinyModelDir } from './helpers/engine-fixtures.ts';

const goldenRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'golden');

type Site = [number, Projection];
const ALL: Projection[] = [...PROJECTIONS];
const every = (projs: Projection[], layers = [0, 1]): Site[] => layers.flatMap((l) => projs.map((p) => [l, p] as Site));

let modelDir: string;
let base: ModelConfig;
before(async () => {
  modelDir = await tinyModelDir();
  base = (await planModelLoad(modelDir)).config;
});

function projShape(c: ModelConfig, proj: Projection): [number, number] {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const s: Record<Projection, [number, number]> = {
    q_proj: [q, c.hiddenSize], k_proj: [kv, c.hiddenSize], v_proj: [kv, c.hiddenSize], o_proj: [c.hiddenSize, q],
    gate_proj: [c.intermediateSize, c.hiddenSize], up_proj: [c.intermediateSize, c.hiddenSize], down_proj: [c.hiddenSize, c.intermediateSize],
  };
  return s[proj];
}

function encode(values: Float32Array, dtype: 'F32' | 'F16' | 'BF16'): ArrayBufferView {
  if (dtype === 'F32') return values;
  return Uint16Array.from(values, dtype === 'BF16' ? f32ToBf16Bits : f32ToF16Bits);
}

interface AdapterSpec {
  config?: Record<string, unknown>; // merged over a default r=4, alpha=8 config
  sites: Site[]; // tensors written (A and B of each)
  rank?: number;
  dtype?: 'F32' | 'F16' | 'BF16';
  extra?: TensorToWrite[];
  shapeOf?: (proj: Projection) => [number, number]; // [out, in], default the base's
  seed?: number;
}

/** An adapter folder written by hand (not by savePeftAdapter), so that any form can be made. */
async function writeAdapter(spec: AdapterSpec): Promise<string> {
  const dir = path.join(await tempDir('lora-studio-adapter-'), 'adapter');
  await mkdir(dir);
  const rank = spec.rank ?? 4;
  const config = {
    ...peftConfigJson({ rank, alpha: 8, dropout: 0, rslora: false, baseModel: null, targetModules: ['q_proj', 'v_proj'], layersToTransform: null }),
    ...spec.config,
  };
  await writeFile(path.join(dir, PEFT_CONFIG_FILE), JSON.stringify(config, null, 2));
  const random = rng(spec.seed ?? 5);
  const tensors: TensorToWrite[] = [];
  for (const [layer, proj] of spec.sites) {
    const [out, inp] = (spec.shapeOf ?? ((p) => projShape(base, p)))(proj);
    for (const [which, shape] of [['A', [rank, inp]], ['B', [out, rank]]] as const) {
      const values = Float32Array.from({ length: shape[0] * shape[1] }, () => random() - 0.5);
      tensors.push({ name: peftKey(layer, proj, which), dtype: spec.dtype ?? 'F32', shape: [...shape], data: encode(values, spec.dtype ?? 'F32') });
    }
  }
  await writeSafetensors(path.join(dir, PEFT_WEIGHTS_FILE), [...tensors, ...(spec.extra ?? [])], { format: 'pt' });
  return dir;
}

const names = (sites: Array<{ layer: number; proj: Projection } | Site>) =>
  sites.map((s) => (Array.isArray(s) ? peftModuleName(s[0], s[1]) : peftModuleName(s.layer, s.proj))).sort();

async function refusal(promise: Promise<unknown>, file: string, field: string, ...includes: Array<string | RegExp>): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof ModelLoadError, `expected a ModelLoadError, got ${String(e)}`);
    assert.equal(path.basename(e.file ?? ''), file, `file of: ${e.message}`);
    assert.ok(e.message.includes(file), `message names ${file}: ${e.message}`);
    assert.equal(e.field, field, `field of: ${e.message}`);
    assert.ok(e.message.includes(field), `message names ${field}: ${e.message}`);
    for (const part of includes) {
      if (typeof part === 'string') assert.ok(e.message.includes(part), `message lacks "${part}": ${e.message}`);
      else assert.match(e.message, part);
    }
    return true;
  });
}

describe('adapter_config.json forms select the modules PEFT selects', () => {
  const forms: Array<{ what: string; config: Record<string, unknown>; sites: Site[]; scale?: number }> = [
    { what: 'a list of bare names', config: { target_modules: ['v_proj', 'q_proj'] }, sites: every(['q_proj', 'v_proj']) },
    { what: 'a dotted suffix', config: { target_modules: ['mlp.down_proj'] }, sites: every(['down_proj']) },
    { what: 'a full module name', config: { target_modules: ['model.layers.1.self_attn.k_proj'] }, sites: [[1, 'k_proj']] },
    { what: 'a regular expression over whole names', config: { target_modules: 'model\\.layers\\.0\\.self_attn\\.[qk]_proj' }, sites: [[0, 'q_proj'], [0, 'k_proj']] },
    { what: 'a regular expression with a named group', config: { target_modules: '.*\\.(?P<p>gate|up)_proj' }, sites: every(['gate_proj', 'up_proj']) },
    { what: '"all-linear"', config: { target_modules: 'all-linear' }, sites: every(ALL) },
    { what: '"ALL-LINEAR" (PEFT compares it case-blind)', config: { target_modules: 'ALL-LINEAR' }, sites: every(ALL) },
    { what: 'target_modules null (PEFT\'s default for these architectures)', config: { target_modules: null }, sites: every(['q_proj', 'v_proj']) },
    { what: 'layers_to_transform as an integer', config: { target_modules: ['o_proj'], layers_to_transform: 1 }, sites: [[1, 'o_proj']] },
    { what: 'layers_to_transform with layers_pattern', config: { target_modules: ['up_proj'], layers_to_transform: [0], layers_pattern: 'layers' }, sites: [[0, 'up_proj']] },
    { what: 'layers_pattern as a list', config: { target_modules: ['up_proj'], layers_to_transform: [1], layers_pattern: ['blocks', 'layers'] }, sites: [[1, 'up_proj']] },
    { what: 'an empty layers_pattern (any layer pattern)', config: { target_modules: ['up_proj'], layers_to_transform: [1], layers_pattern: '' }, sites: [[1, 'up_proj']] },
    { what: 'a full name, which bypasses layers_to_transform', config: { target_modules: ['q_proj', 'model.layers.0.mlp.up_proj'], layers_to_transform: [1] }, sites: [[1, 'q_proj'], [0, 'up_proj']] },
    { what: 'exclude_modules as a list', config: { target_modules: 'all-linear', exclude_modules: ['v_proj', 'mlp.gate_proj'] }, sites: every(['q_proj', 'k_proj', 'o_proj', 'up_proj', 'down_proj']) },
    { what: 'exclude_modules as a regular expression', config: { target_modules: ['q_proj'], exclude_modules: 'model\\.layers\\.1\\..*' }, sites: [[0, 'q_proj']] },
    { what: 'alpha_pattern giving every module one alpha', config: { target_modules: ['q_proj'], alpha_pattern: { q_proj: 16 } }, sites: every(['q_proj']), scale: 4 },
    { what: 'rank_pattern / alpha_pattern entries that match nothing or repeat the default', config: { rank_pattern: { 'mlp\\.up_proj': 16, q_proj: 4 }, alpha_pattern: { v_proj: 8 } }, sites: every(['q_proj', 'v_proj']) },
    { what: 'use_rslora', config: { use_rslora: true }, sites: every(['q_proj', 'v_proj']), scale: 4 },
    { what: 'fan_in_fan_out true (PEFT resets it to false on nn.Linear)', config: { fan_in_fan_out: true }, sites: every(['q_proj', 'v_proj']) },
    { what: 'bias "all" on a base without biases (no bias tensors)', config: { bias: 'all' }, sites: every(['q_proj', 'v_proj']) },
    { what: 'bias "lora_only" without bias tensors', config: { bias: 'lora_only' }, sites: every(['q_proj', 'v_proj']) },
    { what: 'modules_to_save naming no module of this model', config: { modules_to_save: ['classifier', 'score'] }, sites: every(['q_proj', 'v_proj']) },
    { what: 'a setting unknown to LoRA Studio left at null', config: { some_future_setting: null }, sites: every(['q_proj', 'v_proj']) },
    { what: 'a config without the optional fields (older PEFT)', config: { alora_invocation_tokens: undefined, arrow_config: undefined, use_bdlora: undefined, lora_bias: undefined }, sites: every(['q_proj', 'v_proj']) },
    ...(['gaussian', false, 'eva', 'orthogonal', 'mica'] as const).map((init) => ({
      what: `init_lora_weights ${JSON.stringify(init)}`, config: { init_lora_weights: init }, sites: every(['q_proj', 'v_proj']),
    })),
  ];
  for (const f of forms) {
    it(f.what, async () => {
      const dir = await writeAdapter({ config: f.config, sites: f.sites });
      const cfg = await readPeftConfig(dir, base);
      assert.deepEqual(names(cfg.sites), names(f.sites));
      assert.deepEqual(cfg.targets, PROJECTIONS.filter((p) => f.sites.some((s) => s[1] === p)));
      assert.equal(cfg.scale, f.scale ?? 2);
      // without a base the layer count comes from the file
      assert.deepEqual(names((await readPeftConfig(dir)).sites), names(f.sites));
    });
  }
});

describe('adapter_config.json settings the engine cannot apply are refused', () => {
  const refusals: Array<{ what: string; config: Record<string, unknown>; field: string; says?: Array<string | RegExp> }> = [
    { what: 'another PEFT method', config: { peft_type: 'IA3' }, field: 'peft_type', says: ['"IA3"', 'LoRA'] },
    { what: 'no peft_type', config: { peft_type: undefined }, field: 'peft_type' },
    { what: 'another task', config: { task_type: 'SEQ_CLS' }, field: 'task_type', says: ['CAUSAL_LM'] },
    { what: 'DoRA', config: { use_dora: true }, field: 'use_dora', says: ['DoRA', 'merge_and_unload'] },
    { what: 'QA-LoRA', config: { use_qalora: true }, field: 'use_qalora' },
    { what: 'a bias on lora_B', config: { lora_bias: true }, field: 'lora_bias' },
    { what: 'aLoRA', config: { alora_invocation_tokens: [5, 6] }, field: 'alora_invocation_tokens' },
    { what: 'layer replication', config: { layer_replication: [[0, 2]] }, field: 'layer_replication' },
    { what: 'trainable tokens', config: { trainable_token_indices: [3] }, field: 'trainable_token_indices' },
    { what: 'target_parameters', config: { target_parameters: ['mlp.experts'] }, field: 'target_parameters' },
    { what: 'Megatron layers', config: { megatron_config: { tensor_model_parallel_size: 2 } }, field: 'megatron_config' },
    { what: 'an unknown setting with a value', config: { fancy_new_option: true }, field: 'fancy_new_option', says: ['does not know'] },
    { what: 'modules_to_save of a module this model has', config: { modules_to_save: ['lm_head'] }, field: 'modules_to_save', says: ['lm_head'] },
    { what: 'an unknown bias mode', config: { bias: 'some' }, field: 'bias' },
    ...['pissa', 'pissa_niter_4', 'olora', 'corda', 'lora_ga'].map((init) => ({
      what: `init_lora_weights "${init}"`, config: { init_lora_weights: init }, field: 'init_lora_weights', says: ['path_initial_model_for_weight_conversion'],
    })),
    { what: 'init_lora_weights "loftq"', config: { init_lora_weights: 'loftq' }, field: 'init_lora_weights', says: ['LoftQ'] },
    { what: 'an unknown init', config: { init_lora_weights: 'magic' }, field: 'init_lora_weights' },
    { what: 'r of 0', config: { r: 0 }, field: 'r' },
    { what: 'r not a number', config: { r: 'four' }, field: 'r' },
    { what: 'lora_alpha 0', config: { lora_alpha: 0 }, field: 'lora_alpha' },
    { what: 'lora_dropout 1', config: { lora_dropout: 1 }, field: 'lora_dropout' },
    { what: 'use_rslora not a boolean', config: { use_rslora: 'yes' }, field: 'use_rslora' },
    { what: 'a single module name as a string (a regular expression over whole names: matches nothing)', config: { target_modules: 'q_proj' }, field: 'target_modules', says: ['["q_proj"]', 'regular expression'] },
    { what: 'a list naming the embeddings', config: { target_modules: ['q_proj', 'embed_tokens'] }, field: 'target_modules', says: ['model.embed_tokens'] },
    { what: 'a regular expression matching lm_head', config: { target_modules: '.*(q_proj|lm_head)' }, field: 'target_modules', says: ['lm_head'] },
    { what: 'a regular expression matching a norm', config: { target_modules: '.*layernorm' }, field: 'target_modules', says: ['input_layernorm'] },
    { what: 'an empty list', config: { target_modules: [] }, field: 'target_modules' },
    { what: 'names of another architecture', config: { target_modules: ['c_attn', 'c_proj'] }, field: 'target_modules', says: ['selects no module'] },
    { what: 'an unreadable regular expression', config: { target_modules: 'model\\.layers\\.(' }, field: 'target_modules' },
    { what: 'layers_to_transform beside a string', config: { target_modules: '.*q_proj', layers_to_transform: [0] }, field: 'layers_to_transform' },
    { what: 'layers_pattern without layers_to_transform', config: { layers_pattern: 'layers' }, field: 'layers_pattern' },
    { what: 'layers_to_transform of the wrong type', config: { layers_to_transform: ['0'] }, field: 'layers_to_transform' },
    { what: 'per-module ranks', config: { rank_pattern: { v_proj: 8 } }, field: 'rank_pattern', says: ['model.layers.0.self_attn.v_proj', 'rank 8'] },
    { what: 'per-module alphas', config: { alpha_pattern: { 'layers\\.1\\..*': 32 } }, field: 'alpha_pattern', says: ['alpha 32'] },
  ];
  for (const r of refusals) {
    it(r.what, async () => {
      const dir = await writeAdapter({ config: r.config, sites: every(['q_proj', 'v_proj']) });
      await refusal(readPeftConfig(dir, base), PEFT_CONFIG_FILE, r.field, ...(r.says ?? []));
    });
  }

  it('bias "all" with trained bias tensors in the weights', async () => {
    const bias: TensorToWrite = { name: 'base_model.model.model.layers.0.self_attn.q_proj.bias', dtype: 'F32', shape: [64], data: new Float32Array(64) };
    const dir = await writeAdapter({ config: { bias: 'all' }, sites: every(['q_proj', 'v_proj']), extra: [bias] });
    await refusal(readPeftConfig(dir, base), PEFT_CONFIG_FILE, 'bias', 'q_proj.bias');
  });

  it('a folder without adapter_config.json, or with only pickle weights', async () => {
    const dir = await tempDir();
    await assert.rejects(readPeftConfig(dir, base), (e: unknown) =>
      e instanceof ModelLoadError && path.basename(e.file ?? '') === PEFT_CONFIG_FILE && e.message.includes(`${PEFT_CONFIG_FILE} is missing`));
    const adapter = await writeAdapter({ sites: every(['q_proj', 'v_proj']) });
    const pickled = path.join(await tempDir(), 'pickled');
    await mkdir(pickled);
    await cp(path.join(adapter, PEFT_CONFIG_FILE), path.join(pickled, PEFT_CONFIG_FILE));
    await writeFile(path.join(pickled, 'adapter_model.bin'), 'not opened');
    await assert.rejects(readPeftConfig(pickled, base), (e: Error) => e instanceof ModelLoadError && /pickle/.test(e.message) && /can run code/.test(e.message));
  });
});

describe('adapter weights that do not fit the base are refused naming the tensor and both shapes', () => {
  it('another hidden size', async () => {
    const dir = await writeAdapter({ sites: every(['q_proj', 'v_proj']), shapeOf: (p) => (p === 'q_proj' ? [32, 32] : projShape(base, p)) });
    await refusal(readPeftConfig(dir, base), PEFT_WEIGHTS_FILE, 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', '[4, 32]', '[4, 64]', 'different base model');
  });
  it('another rank than adapter_config.json says', async () => {
    const dir = await writeAdapter({ config: { r: 8 }, sites: every(['q_proj', 'v_proj']) });
    await refusal(readPeftConfig(dir, base), PEFT_WEIGHTS_FILE, 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', '[4, 64]', '[8, 64]');
  });
  it('a key for a layer the base lacks', async () => {
    const dir = await writeAdapter({ config: { target_modules: ['q_proj'] }, sites: every(['q_proj'], [0, 1, 2]) });
    await refusal(readPeftConfig(dir, base), PEFT_WEIGHTS_FILE, 'base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight', 'layer 2', '2 layers', '[4, 64]');
  });
  it('a tensor the config implies is missing', async () => {
    const dir = await writeAdapter({ sites: [...every(['q_proj']), [0, 'v_proj']] });
    await refusal(readPeftConfig(dir, base), PEFT_WEIGHTS_FILE, peftKey(1, 'v_proj', 'A'), 'missing');
  });
  it('a tensor for a module the config does not select', async () => {
    const dir = await writeAdapter({ config: { target_modules: ['q_proj'] }, sites: [...every(['q_proj']), [1, 'up_proj']] });
    await refusal(readPeftConfig(dir, base), PEFT_WEIGHTS_FILE, peftKey(1, 'up_proj', 'A'), 'does not select');
  });
  it('a DoRA magnitude vector', async () => {
    const mag: TensorToWrite = { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector', dtype: 'F32', shape: [64], data: new Float32Array(64) };
    const dir = await writeAdapter({ sites: every(['q_proj', 'v_proj']), extra: [mag] });
    await refusal(readPeftConfig(dir, base), PEFT_WEIGHTS_FILE, mag.name, 'DoRA');
  });
  it('an integer dtype', async () => {
    const dir = await writeAdapter({ config: { target_modules: ['q_proj'], layers_to_transform: [0] }, sites: [] ,
      extra: [
        { name: peftKey(0, 'q_proj', 'A'), dtype: 'I32', shape: [4, 64], data: new Int32Array(256) },
        { name: peftKey(0, 'q_proj', 'B'), dtype: 'F32', shape: [64, 4], data: new Float32Array(256) },
      ] });
    await refusal(readPeftConfig(dir, base), PEFT_WEIGHTS_FILE, peftKey(0, 'q_proj', 'A'), 'I32');
  });
});

describe('loading into the engine', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`${dtype} adapter weights load to their exact values; sites the adapter lacks hold A = B = 0`, async () => {
      const sites: Site[] = [[0, 'q_proj'], [1, 'q_proj'], [1, 'down_proj']];
      const dir = await writeAdapter({ config: { target_modules: ['q_proj', 'down_proj'], exclude_modules: 'model\\.layers\\.0\\.mlp\\..*' }, sites, dtype, seed: 9 });
      const model = await EngineModel.load(modelDir, { method: 'lora' });
      try {
        const cfg = await loadPeftAdapter(model, dir, 'a');
        assert.deepEqual(cfg.targets, ['q_proj', 'down_proj']);
        const random = rng(9);
        const widen = dtype === 'BF16' ? (x: number) => bf16BitsToF32(f32ToBf16Bits(x)) : dtype === 'F16' ? (x: number) => f16BitsToF32(f32ToF16Bits(x)) : Math.fround;
        for (const [layer, proj] of sites)
          for (const which of ['A', 'B'] as const) {
            const got = model.readAdapterTensor('a', layer, proj, which);
            const want = Float32Array.from({ length: got.length }, () => widen(random() - 0.5));
            assert.deepEqual(got, want, `${layer} ${proj} ${which}`);
          }
        const lacking = [model.readAdapterTensor('a', 0, 'down_proj', 'A'), model.readAdapterTensor('a', 0, 'down_proj', 'B')];
        assert.ok(lacking.every((t) => t.length > 0 && t.every((x) => x === 0)));
      } finally {
        model.dispose();
      }
    });
  }

  it('a refused adapter leaves the model without it', async () => {
    const dir = await writeAdapter({ config: { use_dora: true }, sites: every(['q_proj', 'v_proj']) });
    const model = await EngineModel.load(modelDir, { method: 'lora' });
    try {
      await assert.rejects(loadPeftAdapter(model, dir, 'bad'), ModelLoadError);
      assert.deepEqual(model.adapterNames(), []);
    } finally {
      model.dispose();
    }
  });
});

// ---- adapters made by Python PEFT in the less common forms --------------------------

interface PeftGoldenCase {
  base: string;
  dir: string;
  dtype: string;
  targeted_modules: string[];
  rank: Record<string, number>;
  scaling: Record<string, number>;
  input_ids: number[][];
  logits: number[];
}
const peftGolden = JSON.parse(readFileSync(path.join(goldenRoot, 'peft', 'golden.json'), 'utf8')) as { cases: Record<string, PeftGoldenCase> };

describe('PEFT-made adapters in less common forms (scripts/golden/make_peft_golden.py)', () => {
  for (const [name, g] of Object.entries(peftGolden.cases)) {
    const baseDir = path.join(goldenRoot, 'models', g.base);
    const adapterDir = path.join(goldenRoot, 'peft', g.dir);
    it(`${name}: the same modules, rank and scaling as PEFT`, async () => {
      const cfg = await readPeftConfig(adapterDir, (await planModelLoad(baseDir)).config);
      assert.deepEqual(names(cfg.sites), g.targeted_modules);
      for (const m of g.targeted_modules) {
        assert.equal(cfg.rank, g.rank[m]);
        assert.ok(Math.abs(cfg.scale - g.scaling[m]!) < 1e-6, `scale ${cfg.scale} vs PEFT ${g.scaling[m]}`);
      }
    });
    for (const method of ['f32', 'lora'] as const) {
      it(`${name}: ${method} base + adapter gives PEFT's logits`, async () => {
        const model = await EngineModel.load(baseDir, { method });
        try {
          await loadPeftAdapter(model, adapterDir, 'g');
          const batch = g.input_ids.length;
          const cache = model.createCache(batch, g.input_ids[0]!.length);
          const got = await model.forward(cache, g.input_ids.flat(), { allPositions: true });
          cache.dispose();
          assert.equal(got.length, g.logits.length);
          let worst = 0;
          for (let i = 0; i < got.length; ++i) worst = Math.max(worst, Math.abs(got[i]! - g.logits[i]!) / (2e-4 + 2e-4 * Math.abs(g.logits[i]!)));
          assert.ok(worst <= 1, `logits differ from PEFT's by ${worst.toFixed(2)}x the tolerance (2e-4 + 2e-4·|ref|)`);
        } finally {
          model.dispose();
        }
      });
    }
  }

  it('"all-linear" written literally selects what PEFT expanded it to', async () => {
    const g = peftGolden.cases['all_linear_qwen3']!;
    const dir = path.join(await tempDir(), 'all-linear');
    await cp(path.join(goldenRoot, 'peft', g.dir), dir, { recursive: true });
    const cfgFile = path.join(dir, PEFT_CONFIG_FILE);
    const json = JSON.parse(await readFile(cfgFile, 'utf8')) as Record<string, unknown>;
    assert.ok(Array.isArray(json.target_modules), 'PEFT saved the expanded list');
    await writeFile(cfgFile, JSON.stringify({ ...json, target_modules: 'all-linear' }));
    const cfg = await readPeftConfig(dir, (await planModelLoad(path.join(goldenRoot, 'models', g.base))).config);
    assert.deepEqual(names(cfg.sites), g.targeted_modules);
  });
});
