// `lora-studio train`, `eval` and `export --to merged` as child processes on a
// tiny model: the --json event stream, Ctrl-C (SIGINT) stopping after a
// checkpoint with exit status 130 and --resume finishing the run, loss and
// perplexity, and a merged model that reloads.
import assert from 'node:assert/strict';
import { access, readdir } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { EngineModel } from '../../engine/api.ts';
import { chatData, jsonLines, runCli, tempDir, tinyChatModel } from './helpers/cli-fixtures.ts';

let root: string;
let model: string;
let data: string;
let adapter: string; // from the first test's run

const FAST = ['--seq-len', '64', '--rank', '4', '--alpha', '8', '--lr', '1e-2'];

before(async () => {
  root = await tempDir('lora-studio-cli-train-');
  model = await tinyChatModel(root);
  data = await chatData(path.join(root, 'chat.jsonl'), 12);
});

describe('lora-studio train', () => {
  it('--json prints only TrainEvent lines: start, steps, eval, checkpoints, done; the adapter folder exists', async () => {
    const out = path.join(root, 'run');
    const r = await runCli([
      'train', '--model', model, '--data', data, '--out', out, ...FAST,
      '--steps', '6', '--save-every', '3', '--eval-split', '0.25', '--eval-every', '3', '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const events = jsonLines(r.stdout);
    const types = events.map((e) => e['type']);
    assert.equal(types[0], 'start');
    assert.equal(types.at(-1), 'done');
    assert.deepEqual(events.filter((e) => e['type'] === 'step').map((e) => e['step']), [1, 2, 3, 4, 5, 6]);
    assert.ok(types.includes('eval'));
    const checkpoints = events.filter((e) => e['type'] === 'checkpoint');
    assert.deepEqual(checkpoints.map((e) => e['step']), [3, 6]);
    for (const c of checkpoints) await access(String(c['path']));
    const start = events[0]!;
    assert.equal(start['total_steps'], 6);
    assert.equal((start['config'] as { rank: number }).rank, 4);
    const done = events.at(-1)!;
    assert.equal(done['reason'], 'completed');
    adapter = String(done['adapter_path']);
    assert.deepEqual((await readdir(adapter)).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
    for (const e of events.filter((e) => e['type'] === 'step')) assert.ok(Number.isFinite(e['loss']));
  });

  it('without --json prints steps, eval and checkpoint lines and a summary', async () => {
    const r = await runCli(['train', '--model', model, '--data', data, '--out', path.join(root, 'run-text'), ...FAST, '--steps', '4', '--save-every', '2', '--eval-split', '0.25', '--eval-every', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^step 4\/4 │ loss \d+\.\d{4} │ eval \d+\.\d{4} │ .* tok\/s │ ETA .* │ mem /m);
    assert.match(r.stdout, /^step 2: eval loss \d+\.\d{4}, perplexity/m);
    assert.match(r.stdout, /^step 2: checkpoint written to .*step-0+2$/m);
    assert.match(r.stdout, /^Done: 4 steps/m);
    assert.match(r.stdout, /adapter: +.*run-text.adapter$/m);
  });

  it('Ctrl-C stops after a checkpoint (exit 130), says how to resume, and --resume completes', async () => {
    const out = path.join(root, 'run-stopped');
    let sent = false;
    const r = await runCli(['train', '--model', model, '--data', data, '--out', out, ...FAST, '--steps', '100000', '--json'], {
      onStdout: (soFar, child) => {
        if (!sent && soFar.includes('"type":"step"')) {
          sent = true;
          child.kill('SIGINT');
        }
      },
    });
    assert.ok(sent, 'a step event came');
    assert.equal(r.code, 130, r.stderr);
    const events = jsonLines(r.stdout);
    const done = events.at(-1)!;
    assert.equal(done['type'], 'done');
    assert.equal(done['reason'], 'stopped');
    const stoppedAt = Number(done['step']);
    assert.ok(stoppedAt >= 1 && stoppedAt < 100000);
    await access(path.join(String(done['checkpoint_path']), 'adapter_model.safetensors'));
    assert.ok(r.stderr.includes(`Resume with: lora-studio train --resume ${out}`), r.stderr);

    const resumed = await runCli(['train', '--resume', out, '--steps', String(stoppedAt + 2), '--json']);
    assert.equal(resumed.code, 0, resumed.stderr);
    const after = jsonLines(resumed.stdout);
    assert.equal(after[0]!['resumed_from_step'], stoppedAt);
    assert.deepEqual(after.filter((e) => e['type'] === 'step').map((e) => e['step']), [stoppedAt + 1, stoppedAt + 2]);
    assert.equal(after.at(-1)!['reason'], 'completed');
  });

  it('a bad setting is a user error naming the flag, also as an error event with --json', async () => {
    const r = await runCli(['train', '--model', model, '--data', data, '--out', path.join(root, 'bad'), '--steps', '5', '--warmup', '9', '--json']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--warmup/);
    const events = jsonLines(r.stdout);
    assert.equal(events.length, 1);
    assert.equal(events[0]!['type'], 'error');
    assert.equal(events[0]!['kind'], 'user');
    const missing = await runCli(['train', '--data', data, '--out', path.join(root, 'bad')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /--model is required/);
  });
});

describe('lora-studio eval and export --to merged', () => {
  it('eval prints loss and perplexity; the adapter lowers the loss it was trained on', async () => {
    const base = await runCli(['eval', '--model', model, '--data', data, '--seq-len', '64', '--json']);
    assert.equal(base.code, 0, base.stderr);
    const b = JSON.parse(base.stdout) as { loss: number; perplexity: number; tokens: number; examples: number };
    assert.equal(b.examples, 12);
    assert.ok(Math.abs(b.perplexity - Math.exp(b.loss)) < 1e-6 * b.perplexity);
    const text = await runCli(['eval', '--model', model, '--adapter', adapter, '--data', data, '--seq-len', '64']);
    assert.equal(text.code, 0, text.stderr);
    const m = /^loss (\d+\.\d+)\nperplexity (\d+\.\d+)\n/.exec(text.stdout);
    assert.ok(m, text.stdout);
    assert.ok(Number(m[1]) < b.loss, `adapted ${m[1]} < base ${b.loss}`);
  });

  it('export --to merged writes a model that reloads and matches base + adapter', async () => {
    const out = path.join(root, 'merged');
    const r = await runCli(['export', '--adapter', adapter, '--to', 'merged', '--model', model, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Wrote the merged model/);
    const merged = await EngineModel.load(out, { method: 'lora' });
    merged.dispose();
    // The merged model scores the data as base + adapter does (up to the rounding of the merged weights to bf16).
    const evalOf = async (...args: string[]) => {
      const e = await runCli(['eval', '--data', data, '--seq-len', '64', '--json', ...args]);
      assert.equal(e.code, 0, e.stderr);
      return (JSON.parse(e.stdout) as { loss: number }).loss;
    };
    const [fromMerged, withAdapter, base] = [await evalOf('--model', out), await evalOf('--model', model, '--adapter', adapter), await evalOf('--model', model)];
    assert.ok(Math.abs(fromMerged - withAdapter) < 0.02, `merged ${fromMerged} vs base + adapter ${withAdapter}`);
    assert.ok(Math.abs(fromMerged - base) > 5 * Math.abs(fromMerged - withAdapter), `the merge changed the model (base ${base})`);
  });
});
