// Forward logits, loss, adapter outputs and adapter gradients of tiny models
// of every architecture against golden values computed by an independent
// implementation (PyTorch + transformers + PEFT, fp32, eager attention; see
// scripts/golden/). The models' weights are stored in bf16, so holding the base
// in bf16 (LoRA) loses nothing and both base formats must match closely.
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { copyFile, cp } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EngineModel, PROJECTIONS, type Projection } from '../../engine/api.ts';
import { loadPeftAdapter, peftKey } from '../../engine/adapters/peft.ts';
import { tempDir } from './helpers/engine-fixtures.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'golden', 'models');

interface GoldenRun {
  logits: number[];
  loss: number;
  trained_tokens?: number;
  grads?: Record<string, { shape: number[]; values: number[] }>;
}
interface Golden {
  kv_cache?: { prefix_len: number; prefill_last_logits: number[]; step_positions: number[]; step_logits: number[] };
  input_ids: number[][];
  labels: number[][];
  base: GoldenRun;
  adapter: GoldenRun;
  adapter_rslora?: GoldenRun;
}

const cases = JSON.parse(readFileSync(path.join(root, 'index.json'), 'utf8')) as { cases: Array<{ name: string }> };

function worst(got: Float32Array, want: number[], atol: number, rtol: number): { ratio: number; at: number } {
  let ratio = 0;
  let at = 0;
  for (let i = 0; i < want.length; ++i) {
    const r = Math.abs(got[i]! - want[i]!) / (atol + rtol * Math.abs(want[i]!));
    if (!(r <= ratio)) {
      ratio = r;
      at = i;
    }
  }
  return { ratio, at };
}

function assertClose(what: string, got: Float32Array, want: number[], atol: number, rtol: number) {
  assert.equal(got.length, want.length, `${what}: length`);
  const w = worst(got, want, atol, rtol);
  assert.ok(w.ratio <= 1, `${what}: value ${w.at} is ${got[w.at]}, reference ${want[w.at]} (${w.ratio.toFixed(2)}× the tolerance)`);
}

async function logits(model: EngineModel, ids: Int32Array, batch: number) {
  const cache = model.createCache(batch, ids.length / batch);
  try {
    return await model.forward(cache, ids, { allPositions: true });
  } finally {
    cache.dispose();
  }
}

for (const { name } of cases.cases) {
  const dir = path.join(root, name);
  const golden = JSON.parse(readFileSync(path.join(dir, 'golden.json'), 'utf8')) as Golden;
  const batch = golden.input_ids.length;
  const seq = golden.input_ids[0]!.length;
  const ids = Int32Array.from(golden.input_ids.flat());
  const labels = Int32Array.from(golden.labels.flat());

  describe(`golden: ${name}`, () => {
    for (const method of ['f32', 'lora'] as const) {
      it(`${method} base: logits and loss match transformers`, async () => {
        const model = await EngineModel.load(dir, { method });
        try {
          assertClose('logits', await logits(model, ids, batch), golden.base.logits, 2e-4, 2e-4);
          const r = await model.evalLoss({ inputIds: ids, labels, batch, seq });
          if (golden.base.trained_tokens !== undefined) assert.equal(r.tokens, golden.base.trained_tokens);
          assert.ok(Math.abs(r.lossSum / r.tokens - golden.base.loss) < 1e-5, `loss ${r.lossSum / r.tokens} vs ${golden.base.loss}`);
        } finally {
          model.dispose();
        }
      });

      it(`${method} base: a PEFT adapter gives the reference logits, loss and gradients`, async () => {
        const model = await EngineModel.load(dir, { method });
        try {
          await loadPeftAdapter(model, path.join(dir, 'adapter'), 'peft');
          assertClose('adapter logits', await logits(model, ids, batch), golden.adapter.logits, 2e-4, 2e-4);
          const r = await model.trainStep({ inputIds: ids, labels, batch, seq }, { checkpointing: true });
          const tokens = r.tokens;
          assert.ok(Math.abs(r.lossSum / tokens - golden.adapter.loss) < 1e-5, `adapter loss ${r.lossSum / tokens} vs ${golden.adapter.loss}`);
          // trainStep used gradScale 1: the reference gradients are of the mean.
          for (let layer = 0; layer < model.config.numLayers; ++layer)
            for (const proj of PROJECTIONS as readonly Projection[])
              for (const which of ['A', 'B'] as const) {
                const ref = golden.adapter.grads?.[peftKey(layer, proj, which)];
                assert.ok(ref, `reference gradient of ${peftKey(layer, proj, which)}`);
                const g = model.readAdapterTensor('peft', layer, proj, which === 'A' ? 'gradA' : 'gradB').map((x) => x / tokens);
                const scale = Math.max(...ref.values.map(Math.abs));
                assertClose(`grad ${peftKey(layer, proj, which)}`, g, ref.values, 1e-3 * scale + 1e-7, 2e-3);
              }
        } finally {
          model.dispose();
        }
      });
    }

    it('KV cache: prefill then one token at a time gives the reference logits', async () => {
      const kv = golden.kv_cache;
      assert.ok(kv, 'golden.json has kv_cache');
      const model = await EngineModel.load(dir, { method: 'lora' });
      try {
        const cache = model.createCache(batch, seq);
        const V = model.config.vocabSize;
        const prefix = golden.input_ids.flatMap((row) => row.slice(0, kv.prefix_len));
        assertClose('prefill logits', await model.forward(cache, prefix), kv.prefill_last_logits, 2e-4, 2e-4);
        for (let i = 0; i < kv.step_positions.length; ++i) {
          const pos = kv.step_positions[i]!;
          const step = await model.forward(cache, golden.input_ids.map((row) => row[pos]!));
          assertClose(`step ${pos}`, step, kv.step_logits.slice(i * batch * V, (i + 1) * batch * V), 2e-4, 2e-4);
        }
        cache.dispose();
      } finally {
        model.dispose();
      }
    });

    if (existsSync(path.join(dir, 'config_legacy.json'))) {
      it('the same model with a config.json in the older hub layout loads to the same logits', async () => {
        const copy = path.join(await tempDir(), name);
        await cp(dir, copy, { recursive: true });
        await copyFile(path.join(dir, 'config_legacy.json'), path.join(copy, 'config.json'));
        const model = await EngineModel.load(copy, { method: 'lora' });
        try {
          assertClose('logits', await logits(model, ids, batch), golden.base.logits, 2e-4, 2e-4);
        } finally {
          model.dispose();
        }
      });
    }

    if (golden.adapter_rslora && existsSync(path.join(dir, 'adapter_rslora'))) {
      it('rsLoRA adapter gives the reference logits', async () => {
        const model = await EngineModel.load(dir, { method: 'lora' });
        try {
          const cfg = await loadPeftAdapter(model, path.join(dir, 'adapter_rslora'), 'rs');
          assert.equal(cfg.rslora, true);
          assert.ok(Math.abs(model.adapterInfo('rs').scale - cfg.alpha / Math.sqrt(cfg.rank)) < 1e-6);
          assertClose('rsLoRA logits', await logits(model, ids, batch), golden.adapter_rslora!.logits, 2e-4, 2e-4);
        } finally {
          model.dispose();
        }
      });
    }

    it('qlora base: logits stay close to the bf16 reference (NF4 error only)', async () => {
      const model = await EngineModel.load(dir, { method: 'qlora' });
      try {
        const got = await logits(model, ids, batch);
        const want = golden.base.logits;
        let num = 0;
        let den = 0;
        for (let i = 0; i < want.length; ++i) {
          num += (got[i]! - want[i]!) ** 2;
          den += want[i]! ** 2;
        }
        const rel = Math.sqrt(num / den);
        // The tiny random weights are wide (std ~0.1) so 4-bit rounding moves the
        // logits visibly; NF4 itself is checked bit for bit against bitsandbytes
        // in the native tests.
        assert.ok(rel < 0.4, `NF4 logits relative error ${rel}`);
        assert.ok(rel > 0, 'NF4 changes the weights');
      } finally {
        model.dispose();
      }
    });
  });
}
