// Loading base models: every architecture and storage dtype, sharded files,
// and the memory bound of quantizing while loading.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EngineModel, memoryStats, resetMemoryPeaks } from '../../engine/api.ts';
import { ModelLoadError } from '../../engine/model/errors.ts';
import { maxAbsDiff, progressionBatch, rng, tinyModelDir } from './helpers/engine-fixtures.ts';

async function logitsOf(model: EngineModel, ids: Int32Array): Promise<Float32Array> {
  const cache = model.createCache(1, ids.length);
  try {
    return await model.forward(cache, ids, { allPositions: true });
  } finally {
    cache.dispose();
  }
}

describe('loading', () => {
  it('F32, F16 and BF16 files give the same bf16 base; sharded equals single-file', async () => {
    const ids = progressionBatch(rng(1), 1, 8, 96).inputIds;
    const out: Record<string, Float32Array> = {};
    for (const [key, opts] of [
      ['bf16', { dtype: 'BF16' as const }],
      ['f32', { dtype: 'F32' as const }],
      ['sharded', { dtype: 'BF16' as const, shards: 3 }],
    ] as const) {
      const model = await EngineModel.load(await tinyModelDir({ seed: 4, ...opts }), { method: 'lora' });
      out[key] = await logitsOf(model, ids);
      model.dispose();
    }
    assert.equal(maxAbsDiff(out.sharded!, out.bf16!), 0);
    // F32 weights rounded to bf16 at load = the BF16 file (same seed, same values rounded).
    assert.ok(maxAbsDiff(out.f32!, out.bf16!) < 1e-5, `f32 file vs bf16 file: ${maxAbsDiff(out.f32!, out.bf16!)}`);
    const f16 = await EngineModel.load(await tinyModelDir({ seed: 4, dtype: 'F16' }), { method: 'lora' });
    // F16 and BF16 round differently; the outputs agree to bf16 precision.
    assert.ok(maxAbsDiff(await logitsOf(f16, ids), out.bf16!) < 2e-2);
    f16.dispose();
  });

  it('loads every architecture in both base formats', async () => {
    for (const arch of ['llama', 'mistral', 'qwen2', 'qwen3'] as const) {
      for (const method of ['lora', 'qlora'] as const) {
        const model = await EngineModel.load(await tinyModelDir({ arch, headDim: arch === 'qwen3' ? 32 : undefined }), { method });
        const logits = await logitsOf(model, progressionBatch(rng(2), 1, 5, 96).inputIds);
        assert.equal(logits.length, 5 * 96);
        assert.ok(logits.every(Number.isFinite), `${arch} ${method}: finite logits`);
        model.dispose();
      }
    }
  });

  it('quantizes while loading: peak memory stays near the NF4 size, never the 16-bit model', async () => {
    const dir = await tinyModelDir({ hiddenSize: 512, intermediateSize: 1536, numLayers: 4, numHeads: 8, numKvHeads: 8, vocabSize: 4096 });
    const before = memoryStats();
    resetMemoryPeaks();
    const model = await EngineModel.load(dir, { method: 'qlora' });
    try {
      const peak = memoryStats().totalPeak - before.totalCurrent;
      const base = model.baseBytes();
      const projParams = 4 * (4 * 512 * 512 + 3 * 512 * 1536);
      // NF4 at ~4.13 bits per weight plus the bf16 embedding table and output head.
      assert.ok(base < projParams * (4.2 / 8) + 2 * (4096 * 512 * 2) + 64 * 1024, `NF4 base is ${base} bytes`);
      // Transient use while loading: per-thread conversion chunks and one tensor's absmax values.
      assert.ok(peak < base + 4 * 2 ** 20, `peak while loading ${peak} bytes vs base ${base}`);
      assert.ok(peak < projParams * 2, 'never near the 16-bit size');
    } finally {
      model.dispose();
    }
  });

  it('refuses a folder that is not a model, naming the file', async () => {
    const dir = await tinyModelDir();
    await assert.rejects(EngineModel.load(dir + '-missing', { method: 'lora' }), (e: unknown) => e instanceof ModelLoadError && /model-missing does not exist/.test((e as Error).message));
    await assert.rejects(EngineModel.load(dir, { method: 'int8' as 'lora' }), /method/);
  });
});
