// The fit search on catalogue cards, against hand-checked expectations, and
// on this machine's CPU RAM (no GPU here).
//
// Hand check, Llama-3.1-8B (8.0 B weights, untied 128256 × 4096 embeddings):
//   bf16 base ≈ 15.0 GiB, so LoRA needs more than an 8 GB card; NF4 base
//   ≈ 3.35 GiB of projections + 1.96 GiB of bf16 embeddings ≈ 5.3 GiB, which
//   leaves an 8 GB card (7.2 GiB after the 10% margin, 0.3 GiB CUDA context)
//   about 1.5 GiB: activations of ~1k tokens with checkpointing, not 4k
//   (the layer inputs alone are 33 × tokens × 16 KiB: 2.1 GiB at 4096).
//   A 24 GB card (21.6 GiB budget) holds the bf16 base plus 4k tokens with
//   checkpointing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cpuDevice, resolveDevice } from '../../engine/estimate/device.ts';
import { estimateMemory } from '../../engine/estimate/estimate.ts';
import { FIT_SAFETY_MARGIN, fitSettings } from '../../engine/estimate/fit.ts';
import { resolveModelShape } from '../../engine/estimate/model-source.ts';

const GiB = 1024 ** 3;

describe('fit', () => {
  it('an 8 GB card gets QLoRA with checkpointing for Llama-3.1-8B, at a shorter context', async () => {
    const model = await resolveModelShape('Llama-3.1-8B');
    const { device } = await resolveDevice('RTX 4060');
    assert.equal(device.totalBytes, 8 * GiB);
    const r = fitSettings(model, device);
    assert.ok(r.found && r.choices && r.estimate);
    assert.equal(r.choices.method, 'qlora');
    assert.equal(r.choices.checkpointing, true);
    assert.ok(r.choices.seqLen >= 512 && r.choices.seqLen < 4096, `seq-len ${r.choices.seqLen}`);
    assert.ok(r.estimate.totalBytes <= r.budgetBytes);
    assert.equal(r.budgetBytes, Math.floor(8 * GiB * (1 - FIT_SAFETY_MARGIN)));
    assert.match(r.changes.join('\n'), /QLoRA .*bf16 base/);
    assert.match(r.changes.join('\n'), /gradient checkpointing on/);
    // One rung longer does not fit, even with the lightest settings.
    const longer = estimateMemory(model, { ...r.choices, seqLen: r.choices.seqLen * 2, batch: 1, rank: 4 }, device);
    assert.ok(longer.totalBytes > r.budgetBytes);
  });

  it('a 24 GB card gets more: the bf16 base at the longest context', async () => {
    const model = await resolveModelShape('Llama-3.1-8B');
    const small = fitSettings(model, (await resolveDevice('4060')).device);
    const r = fitSettings(model, (await resolveDevice('4090')).device);
    assert.ok(r.found && r.choices && small.choices);
    assert.equal(r.choices.method, 'lora');
    assert.equal(r.choices.seqLen, 4096);
    assert.ok(r.choices.seqLen > small.choices.seqLen);
    assert.doesNotMatch(r.changes.join('\n'), /QLoRA/);
  });

  it('keeps fixed choices, and says what would fit when nothing does', async () => {
    const model = await resolveModelShape('Llama-3.1-8B');
    const { device } = await resolveDevice('4060');
    const fixed = fitSettings(model, device, { seqLen: 256, rank: 8 });
    assert.equal(fixed.choices?.seqLen, 256);
    assert.equal(fixed.choices?.rank, 8);
    const none = fitSettings(model, device, { method: 'lora' });
    assert.equal(none.found, false);
    const text = none.suggestions.join('\n');
    assert.match(text, /A smaller model fits: /);
    assert.match(text, /A bigger card fits: (20|24) GB or more/);
  });

  it('on a machine without a GPU, fits the CPU RAM', async () => {
    const model = await resolveModelShape('SmolLM2-135M');
    const device = cpuDevice();
    const r = fitSettings(model, device);
    assert.ok(r.found && r.estimate && r.choices);
    assert.equal(r.estimate.device.kind, 'cpu');
    assert.equal(r.budgetBytes, Math.floor(device.availableBytes! * (1 - FIT_SAFETY_MARGIN)));
    assert.ok(r.estimate.totalBytes <= r.budgetBytes);
    assert.equal(r.estimate.overheads[0]?.name, 'process baseline');
  });
});
