// The suggested models: shapes give the published parameter counts, and the
// fit judgement agrees with the estimator's own fit on real and catalogue devices.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { resolveDevice, type EstimateDevice } from '../../engine/estimate/device.ts';
import { fitSettings } from '../../engine/estimate/fit.ts';
import { parseModelConfig } from '../../engine/model/config.ts';
import { createTinyModel } from '../../engine/model/tiny.ts';
import { describeLocalModel } from '../../main/models/local.ts';
import { CPU_PRACTICAL_MAX_PARAMETERS, SUGGESTED_MODELS, parameterCountOf, sizeLabel, suggestFor } from '../../main/models/suggested.ts';

const GiB = 1024 ** 3;
const byRepo = (repo: string) => SUGGESTED_MODELS.find((m) => m.repo === repo)!;
const card = async (name: string) => (await resolveDevice(name)).device;

describe('suggested models', () => {
  it('have the parameter counts the model cards publish', () => {
    // Exact totals of the published safetensors (tied embeddings counted once).
    assert.equal(byRepo('Qwen/Qwen2.5-0.5B-Instruct').parameterCount, 494_032_768);
    assert.equal(byRepo('meta-llama/Llama-3.2-1B-Instruct').parameterCount, 1_235_814_400);
    assert.equal(byRepo('meta-llama/Llama-3.1-8B-Instruct').parameterCount, 8_030_261_248);
    assert.equal(byRepo('mistralai/Mistral-7B-Instruct-v0.3').parameterCount, 7_248_023_552);
    assert.equal(byRepo('Qwen/Qwen2.5-7B-Instruct').parameterCount, 7_615_616_512);
    assert.equal(byRepo('HuggingFaceTB/SmolLM2-135M-Instruct').parameterCount, 134_515_008);
  });

  it('count parameters as the loader does, on a real folder', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'lora-studio-suggest-'));
    try {
      for (const arch of ['llama', 'qwen2', 'qwen3'] as const) {
        const model = await createTinyModel(path.join(dir, arch), { arch, tie: arch === 'llama' });
        const facts = await describeLocalModel(model.dir, { fingerprint: false });
        const config = parseModelConfig(model.config, path.join(model.dir, 'config.json'));
        assert.equal(parameterCountOf(config), facts.parameterCount, arch);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('list repo, licence, gating and an approximate bf16 download size, smallest first', () => {
    assert.ok(SUGGESTED_MODELS.length >= 10);
    for (const m of SUGGESTED_MODELS) {
      assert.match(m.repo, /^[\w.-]+\/[\w.-]+$/);
      assert.ok(m.downloadBytes > m.parameterCount * 2 && m.downloadBytes < m.parameterCount * 2 + 64 * 1024 ** 2, m.repo);
      assert.ok(m.licence && m.note);
      assert.equal(m.gated, m.repo.startsWith('meta-llama/') || m.repo.startsWith('mistralai/'), m.repo);
    }
    const sizes = SUGGESTED_MODELS.map((m) => m.parameterCount);
    assert.deepEqual(sizes, [...sizes].sort((a, b) => a - b));
  });

  it('label sizes as people name them', () => {
    assert.equal(sizeLabel(134_515_008), '135M');
    assert.equal(sizeLabel(1_543_714_304), '1.5B');
    assert.equal(sizeLabel(8_030_261_248), '8B');
    assert.equal(sizeLabel(7_615_616_512), '7.6B');
  });
});

describe('suggestFor', () => {
  it('agrees with the estimator fit, GPU first, LoRA before QLoRA', async () => {
    const devices: EstimateDevice[] = [await card('rtx 4060'), await card('rtx 4090')];
    for (const s of suggestFor(devices)) {
      const seqLen = Math.min(1024, s.model.config.maxPositionEmbeddings);
      const shape = { name: s.model.name, config: s.model.config, source: 'preset' as const, dir: null };
      const loraSomewhere = devices.find((d) => fitSettings(shape, d, { method: 'lora', seqLen }).found);
      const qloraSomewhere = devices.find((d) => fitSettings(shape, d, { method: 'qlora', seqLen }).found);
      assert.equal(s.fitsLora, loraSomewhere !== undefined, s.model.repo);
      assert.equal(s.fitsQlora, qloraSomewhere !== undefined, s.model.repo);
      if (s.best) {
        const first = devices.find((d) => d.name === s.best!.device)!;
        const loraHere = fitSettings(shape, first, { method: 'lora', seqLen }).found;
        assert.equal(s.best.method, loraHere ? 'lora' : 'qlora', s.model.repo);
        assert.equal(s.best.seqLen, seqLen);
        assert.ok(s.best.peakBytes <= first.totalBytes * 0.9);
      } else {
        assert.ok(s.reason);
      }
    }
  });

  it('does not train an 8B bf16 model with LoRA on an 8 GB card, but does with QLoRA on 24 GB', async () => {
    const small = suggestFor([await card('rtx 4060')]).find((s) => s.model.repo === 'meta-llama/Llama-3.1-8B-Instruct')!;
    assert.equal(small.fitsLora, false); // 16 GB of bf16 weights alone
    const big = suggestFor([await card('rtx 4090')]).find((s) => s.model.repo === 'meta-llama/Llama-3.1-8B-Instruct')!;
    assert.equal(big.fitsQlora, true);
    assert.equal(big.best!.device, (await card('rtx 4090')).name);
  });

  it('keeps a CPU to small models, whatever its RAM, and says why', () => {
    const cpu: EstimateDevice = { kind: 'cpu', name: 'CPU (test, 8 threads)', totalBytes: 256 * GiB, availableBytes: 250 * GiB, source: 'this machine', vendor: null, computeCapability: null, threads: 8 };
    for (const s of suggestFor([cpu])) {
      const small = s.model.parameterCount <= CPU_PRACTICAL_MAX_PARAMETERS;
      assert.equal(s.best !== null, small, s.model.repo);
      if (!small) assert.match(s.reason!, /too slow to train on a CPU/);
    }
    const tiny: EstimateDevice = { ...cpu, totalBytes: GiB / 4, availableBytes: GiB / 8 };
    const none = suggestFor([tiny]);
    assert.ok(none.every((s) => s.best === null));
    assert.match(none[0]!.reason!, /Does not fit the memory of CPU \(test, 8 threads\)/);
  });
});
