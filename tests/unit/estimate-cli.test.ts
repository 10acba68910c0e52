// `lora-studio estimate` and `lora-studio fit` as a user runs them: real child
// processes, a tiny model folder and presets.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { createTinyModel } from '../../engine/model/tiny.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'lora-studio.mjs');
const CATEGORIES = ['base', 'adapters', 'gradients', 'optimizer', 'activations', 'workspace'];

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { cwd: root, env: { ...process.env, NO_COLOR: '1' } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('lora-studio estimate / fit', () => {
  let dir = '';
  let modelDir = '';
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'ls-est-cli-'));
    modelDir = (await createTinyModel(path.join(dir, 'tiny'), { arch: 'qwen2', tokenizer: true })).dir;
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('estimate --json on a model folder: categories sum to the engine peak, overheads to the total', async () => {
    const r = await run(['estimate', '--model', modelDir, '--rank', '4', '--seq-len', '64', '--batch', '2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.model, 'tiny');
    assert.equal(j.model_source, 'folder');
    assert.equal(j.arch, 'qwen2');
    assert.equal(j.device.kind, 'cpu');
    const sum = CATEGORIES.reduce((s, c) => s + j[`${c}_bytes`], 0);
    assert.equal(sum, j.engine_bytes);
    assert.equal(j.total_bytes, j.engine_bytes + j.overhead_bytes);
    for (const c of CATEGORIES) assert.ok(j.category_peaks[`${c}_bytes`] >= j[`${c}_bytes`], c);
    assert.equal(j.fits, j.total_bytes <= j.usable_bytes);
    assert.equal(j.margin_bytes, j.usable_bytes - j.total_bytes);
    assert.ok(['forward', 'backward', 'optimizer'].includes(j.peak_phase));
  });

  it('estimate for a catalogue card adds the CUDA context and cuBLAS workspace', async () => {
    const r = await run(['estimate', '--model', 'Llama-3.1-8B', '--method', 'qlora', '--seq-len', '1024', '--device', 'rtx 4060']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /GeForce RTX 4060 \(catalogue\)/);
    assert.match(r.stdout, /CUDA context +300\.0 MiB/);
    assert.match(r.stdout, /cuBLAS workspace +4\.0 MiB/);
    assert.match(r.stdout, /predicted peak/);
    assert.match(r.stdout, /^(Fits|Does not fit)/m);
    const checkpointed = JSON.parse((await run(['estimate', '--model', 'Llama-3.1-8B', '--seq-len', '2048', '--json'])).stdout);
    const kept = JSON.parse((await run(['estimate', '--model', 'Llama-3.1-8B', '--seq-len', '2048', '--no-gradient-checkpointing', '--json'])).stdout);
    assert.equal(kept.gradient_checkpointing, false);
    assert.ok(kept.activations_bytes > checkpointed.activations_bytes);
  });

  it('bad input: exit 1 naming the flag', async () => {
    const device = await run(['estimate', '--model', 'Llama-3.1-8B', '--device', 'rtx 9999']);
    assert.equal(device.code, 1);
    assert.match(device.stderr, /--device: 'rtx 9999' is not a GPU in the catalogue/);
    const model = await run(['estimate', '--model', path.join(dir, 'missing')]);
    assert.equal(model.code, 1);
    assert.match(model.stderr, /--model: .* is neither a model folder nor a preset/);
    const rank = await run(['estimate', '--model', 'Llama-3.1-8B', '--rank', 'x']);
    assert.equal(rank.code, 1);
    assert.match(rank.stderr, /--rank/);
    assert.doesNotMatch(model.stderr + device.stderr, /\n\s+at /, 'no stack trace');
  });

  it('fit --json on a catalogue card and on this machine', async () => {
    const card = JSON.parse((await run(['fit', '--model', 'Llama-3.1-8B', '--device', '4060', '--json'])).stdout);
    assert.equal(card.found, true);
    assert.equal(card.settings.method, 'qlora');
    assert.ok(card.estimate.total_bytes <= card.budget_bytes);
    assert.ok(card.changes.length > 0);
    const here = await run(['fit', '--model', modelDir]);
    assert.equal(here.code, 0, here.stderr);
    assert.match(here.stdout, /Best settings: LoRA \(bf16 base\), seq-len \d+/);
    assert.match(here.stdout, /lora-studio train --method lora/);
  });
});
