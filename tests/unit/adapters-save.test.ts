// savePeftAdapter: the files PEFT itself writes (compared with the adapters
// PEFT saved in tests/golden/models), bit-exact reloads, layer subsets, and the
// recorded check that transformers + PEFT load our files to the engine's
// logits (tests/golden/peft/roundtrip.json, made by check_peft_roundtrip.py).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EngineModel, PROJECTIONS, type Projection } from '../../engine/api.ts';
import {
  PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, loadPeftAdapter, peftModuleName, peftTargetsFor, readPeftConfig, savePeftAdapter,
} from '../../engine/adapters/peft.ts';
import { readSafetensorsHeader } from '../../engine/model/safetensors.ts';
import { ROUNDTRIP_CASES, writeRoundtripCase } from '../../scripts/golden/peft_roundtrip.ts';
import { rng, tempDir, tinyModelDir } from './helpers/engine-fixtures.ts';

const golden = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'golden');

/** Fills every A and B of adapter `name` with seeded values; `zero` sites get A = B = 0. */
function fill(model: EngineModel, name: string, seed: number, zero: Array<[number, Projection]> = []): void {
  const random = rng(seed);
  const info = model.adapterInfo(name);
  for (let layer = 0; layer < model.config.numLayers; ++layer)
    for (const proj of info.targets)
      for (const which of ['A', 'B'] as const) {
        const t = model.readAdapterTensor(name, layer, proj, which);
        const off = zero.some(([l, p]) => l === layer && p === proj);
        for (let i = 0; i < t.length; ++i) t[i] = off ? 0 : random() - 0.5;
        model.writeAdapterTensor(name, layer, proj, which, t);
      }
}

function assertSameAdapter(a: EngineModel, an: string, b: EngineModel, bn: string): void {
  const ia = a.adapterInfo(an);
  const ib = b.adapterInfo(bn);
  for (const k of ['rank', 'alpha', 'dropout', 'rslora', 'targets', 'scale'] as const) assert.deepEqual(ib[k], ia[k], k);
  for (let layer = 0; layer < a.config.numLayers; ++layer)
    for (const proj of ia.targets)
      for (const which of ['A', 'B'] as const) {
        const x = new Uint32Array(a.readAdapterTensor(an, layer, proj, which).buffer);
        const y = new Uint32Array(b.readAdapterTensor(bn, layer, proj, which).buffer);
        assert.deepEqual(y, x, `layer ${layer} ${proj} ${which} bit for bit`);
      }
}

describe('savePeftAdapter', () => {
  it('a saved adapter reloads bit for bit (rank, alpha, dropout, rsLoRA, targets, every value)', async () => {
    const modelDir = await tinyModelDir({ arch: 'qwen2' });
    const a = await EngineModel.load(modelDir, { method: 'lora' });
    const b = await EngineModel.load(modelDir, { method: 'qlora' });
    try {
      a.addAdapter('x', { rank: 6, alpha: 5.5, dropout: 0.1, rslora: true, targets: ['k_proj', 'o_proj', 'gate_proj', 'down_proj'] });
      fill(a, 'x', 3);
      const dir = path.join(await tempDir(), 'saved');
      await savePeftAdapter(a, 'x', dir, { baseModel: 'tiny-qwen2' });
      const cfg = await loadPeftAdapter(b, dir, 'y');
      assert.equal(cfg.baseModel, 'tiny-qwen2');
      assertSameAdapter(a, 'x', b, 'y');
      assert.deepEqual((await readdir(dir)).sort(), [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE], 'no temp files left');
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('layer subsets: inert (all-zero) sites are left out and come back as zeros', async () => {
    const modelDir = await tinyModelDir({ numLayers: 3 });
    const cases: Array<{ zero: Array<[number, Projection]>; form: (j: Record<string, unknown>) => void }> = [
      { zero: [[1, 'q_proj'], [1, 'up_proj']], form: (j) => { assert.deepEqual(j.target_modules, ['q_proj', 'up_proj']); assert.deepEqual(j.layers_to_transform, [0, 2]); } },
      { zero: [[0, 'q_proj'], [2, 'up_proj']], form: (j) => { assert.equal(typeof j.target_modules, 'string'); assert.equal(j.layers_to_transform, null); } },
      { zero: [], form: (j) => { assert.deepEqual(j.target_modules, ['q_proj', 'up_proj']); assert.equal(j.layers_to_transform, null); } },
    ];
    for (const c of cases) {
      const a = await EngineModel.load(modelDir, { method: 'lora' });
      const b = await EngineModel.load(modelDir, { method: 'lora' });
      try {
        a.addAdapter('x', { rank: 2, alpha: 4, targets: ['q_proj', 'up_proj'] });
        fill(a, 'x', 8, c.zero);
        const dir = path.join(await tempDir(), 'subset');
        await savePeftAdapter(a, 'x', dir);
        const json = JSON.parse(await readFile(path.join(dir, PEFT_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
        c.form(json);
        const header = await readSafetensorsHeader(path.join(dir, PEFT_WEIGHTS_FILE));
        assert.equal(header.tensors.size, 2 * (3 * 2 - c.zero.length));
        const cfg = await loadPeftAdapter(b, dir, 'y');
        const expected = [0, 1, 2].flatMap((l) => (['q_proj', 'up_proj'] as const).filter((p) => !c.zero.some(([zl, zp]) => zl === l && zp === p)).map((p) => peftModuleName(l, p)));
        assert.deepEqual(cfg.sites.map((s) => peftModuleName(s.layer, s.proj)), expected);
        assertSameAdapter(a, 'x', b, 'y');
        // saving the reloaded adapter writes the same bytes again
        const again = path.join(await tempDir(), 'again');
        await savePeftAdapter(b, 'y', again);
        for (const f of [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE])
          assert.deepEqual(await readFile(path.join(again, f)), await readFile(path.join(dir, f)), f);
      } finally {
        a.dispose();
        b.dispose();
      }
    }
  });

  it('training a loaded layer subset keeps the missing sites at zero, so it saves to the same form', async () => {
    const modelDir = await tinyModelDir();
    const m = await EngineModel.load(modelDir, { method: 'lora' });
    try {
      m.addAdapter('x', { rank: 2, alpha: 4, targets: ['v_proj', 'down_proj'] });
      fill(m, 'x', 4, [[0, 'down_proj']]);
      const dir = path.join(await tempDir(), 'subset');
      await savePeftAdapter(m, 'x', dir);
      m.removeAdapter('x');
      await loadPeftAdapter(m, dir, 'y');
      const random = rng(2);
      const ids = Int32Array.from({ length: 16 }, () => Math.floor(random() * 96));
      for (let step = 0; step < 3; ++step) {
        await m.trainStep({ inputIds: ids, labels: ids, batch: 2, seq: 8 });
        await m.optimizerStep({ lr: 1e-2, weightDecay: 0.1 });
      }
      assert.ok(m.readAdapterTensor('y', 0, 'down_proj', 'A').every((x) => x === 0));
      assert.ok(m.readAdapterTensor('y', 0, 'down_proj', 'B').every((x) => x === 0));
      assert.ok(m.readAdapterTensor('y', 1, 'down_proj', 'B').some((x) => x !== 0));
      const again = path.join(await tempDir(), 'trained');
      await savePeftAdapter(m, 'y', again);
      const json = JSON.parse(await readFile(path.join(again, PEFT_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
      assert.equal(json.target_modules, 'model\\.layers\\.(?:0\\.(?:self_attn\\.(?:v_proj))|1\\.(?:self_attn\\.(?:v_proj)|mlp\\.(?:down_proj)))');
    } finally {
      m.dispose();
    }
  });

  it('peftTargetsFor picks the simplest form, and each form selects exactly its sites', async () => {
    const sites = [
      { layer: 0, proj: 'q_proj' as const }, { layer: 1, proj: 'v_proj' as const }, { layer: 1, proj: 'down_proj' as const },
    ];
    const t = peftTargetsFor(sites, 2);
    assert.equal(t.targetModules, 'model\\.layers\\.(?:0\\.(?:self_attn\\.(?:q_proj))|1\\.(?:self_attn\\.(?:v_proj)|mlp\\.(?:down_proj)))');
    assert.deepEqual(peftTargetsFor(PROJECTIONS.map((proj) => ({ layer: 1, proj })), 2), { targetModules: [...PROJECTIONS].sort(), layersToTransform: [1] });
  });

  it('overwriting an adapter folder replaces it whole', async () => {
    const modelDir = await tinyModelDir();
    const m = await EngineModel.load(modelDir, { method: 'lora' });
    try {
      m.addAdapter('one', { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] });
      m.addAdapter('two', { rank: 2, alpha: 2, targets: ['down_proj'] });
      fill(m, 'one', 1);
      fill(m, 'two', 2);
      const dir = path.join(await tempDir(), 'adapter');
      await savePeftAdapter(m, 'one', dir);
      await savePeftAdapter(m, 'two', dir);
      const cfg = await readPeftConfig(dir, m.config);
      assert.deepEqual([cfg.rank, cfg.alpha, cfg.targets], [2, 2, ['down_proj']]);
      assert.deepEqual((await readdir(dir)).sort(), [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE]);
    } finally {
      m.dispose();
    }
  });
});

describe('our files are the files PEFT writes', () => {
  const index = JSON.parse(readFileSync(path.join(golden, 'models', 'index.json'), 'utf8')) as { cases: Array<{ name: string; has_rslora: boolean }> };
  for (const { name, has_rslora } of index.cases) {
    for (const sub of has_rslora ? ['adapter', 'adapter_rslora'] : ['adapter']) {
      it(`${name}/${sub}: loaded and saved again, both files are byte for byte PEFT's`, async () => {
        const baseDir = path.join(golden, 'models', name);
        const peftDir = path.join(baseDir, sub);
        const model = await EngineModel.load(baseDir, { method: 'lora' });
        try {
          await loadPeftAdapter(model, peftDir, 'p');
          const dir = path.join(await tempDir(), sub);
          await savePeftAdapter(model, 'p', dir, { baseModel: name });
          const ours = JSON.parse(await readFile(path.join(dir, PEFT_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
          const theirs = JSON.parse(await readFile(path.join(peftDir, PEFT_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
          assert.deepEqual(Object.keys(ours).sort(), Object.keys(theirs).sort(), 'the same config fields');
          assert.deepEqual(ours, theirs, 'the same config values');
          assert.equal(await readFile(path.join(dir, PEFT_CONFIG_FILE), 'utf8'), await readFile(path.join(peftDir, PEFT_CONFIG_FILE), 'utf8'), 'the same JSON text');
          const h1 = await readSafetensorsHeader(path.join(dir, PEFT_WEIGHTS_FILE));
          const h2 = await readSafetensorsHeader(path.join(peftDir, PEFT_WEIGHTS_FILE));
          assert.deepEqual(h1.metadata, h2.metadata);
          assert.deepEqual([...h1.tensors.keys()].sort(), [...h2.tensors.keys()].sort(), 'the same tensor names');
          for (const [k, t] of h2.tensors) assert.deepEqual([h1.tensors.get(k)?.dtype, h1.tensors.get(k)?.shape], [t.dtype, t.shape], k);
          assert.ok((await readFile(path.join(dir, PEFT_WEIGHTS_FILE))).equals(await readFile(path.join(peftDir, PEFT_WEIGHTS_FILE))), 'the same weight file bytes');
        } finally {
          model.dispose();
        }
      });
    }
  }
});

interface RoundtripRecord {
  versions: Record<string, string>;
  passed: boolean;
  cases: Record<string, {
    files: Record<string, string>;
    targeted_modules: string[];
    scaling: Record<string, number>;
    peft_logits: number[];
    max_abs_diff: number;
    adapter_effect_max_abs: number;
    tolerance: { atol: number; rtol: number };
    passed: boolean;
  }>;
}

describe('transformers + PEFT load our adapters (recorded by scripts/golden/check_peft_roundtrip.py)', () => {
  const record = JSON.parse(readFileSync(path.join(golden, 'peft', 'roundtrip.json'), 'utf8')) as RoundtripRecord;
  it('the recorded check passed with the PEFT version our config fields follow', () => {
    assert.equal(record.passed, true);
    assert.deepEqual(Object.keys(record.cases).sort(), ROUNDTRIP_CASES.map((c) => c.name).sort());
    assert.ok(record.versions.peft && record.versions.transformers && record.versions.torch);
  });
  for (const c of ROUNDTRIP_CASES) {
    it(`${c.name}: the current writer makes the very files PEFT loaded, and the engine still gives PEFT's logits`, async () => {
      const r = record.cases[c.name]!;
      assert.equal(r.passed, true);
      assert.ok(r.max_abs_diff <= r.tolerance.atol, `recorded difference ${r.max_abs_diff}`);
      assert.ok(r.adapter_effect_max_abs > 100 * r.tolerance.atol, 'the adapter visibly changes the logits');
      const w = await writeRoundtripCase(c, path.join(await tempDir(), c.name));
      assert.deepEqual(w.sha256, r.files, 'adapter files differ from the ones the Python check loaded: rerun scripts/golden (see README)');
      const cfg = await readPeftConfig(w.adapterDir);
      assert.deepEqual(cfg.sites.map((s) => peftModuleName(s.layer, s.proj)).sort(), r.targeted_modules);
      for (const m of r.targeted_modules) assert.ok(Math.abs(cfg.scale - r.scaling[m]!) < 1e-6);
      let worst = 0;
      for (let i = 0; i < w.logits.length; ++i)
        worst = Math.max(worst, Math.abs(w.logits[i]! - r.peft_logits[i]!) / (r.tolerance.atol + r.tolerance.rtol * Math.abs(r.peft_logits[i]!)));
      assert.equal(w.logits.length, r.peft_logits.length);
      assert.ok(worst <= 1, `engine logits differ from PEFT's by ${worst.toFixed(2)}x the tolerance`);
    });
  }
});
