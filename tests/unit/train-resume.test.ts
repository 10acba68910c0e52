// Resuming a run: after a real `kill -9` of the training process, from the
// newest whole checkpoint, past temp folders a kill leaves, and refusing
// damaged checkpoints with the file named.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdir, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { CheckpointError } from '../../engine/train/checkpoint.ts';
import { resumeTraining, runTraining } from '../../engine/train/run.ts';
import type { TrainEvent } from '../../engine/train/types.ts';
import { eventLog, fixtureConfig, trainFixture } from './helpers/train-fixtures.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CHILD = path.join(import.meta.dirname, 'helpers', 'train-child.ts');

describe('resume', () => {
  it('after kill -9 mid-run continues onto the uninterrupted loss curve exactly', async () => {
    const f = await trainFixture();
    const over = { steps: 120, saveEvery: 3, keepCheckpoints: 2, dropout: 0.1, evalSplit: 0.2, evalEvery: 10 };
    const config = fixtureConfig(f, 'killed', over);
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(config)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const seen: TrainEvent[] = [];
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    for await (const line of createInterface({ input: child.stdout })) {
      const e = JSON.parse(line) as TrainEvent;
      seen.push(e);
      if (e.type === 'checkpoint' && e.step >= 9) child.kill('SIGKILL');
    }
    assert.equal(await exited, 'SIGKILL', `the child was killed (stderr: ${stderr})`);
    const childSteps = seen.flatMap((e) => (e.type === 'step' ? [e] : []));
    assert.ok(!seen.some((e) => e.type === 'done') && childSteps.length < 120, 'killed before the end');

    // A temp folder as a kill during a checkpoint write leaves it: a whole copy of a
    // checkpoint under a temp name must not be taken for one.
    const checkpoints = path.join(f.dir, 'killed', 'checkpoints');
    const whole = (await readdir(checkpoints)).filter((n) => n.startsWith('step-')).sort();
    // keepCheckpoints 2, plus one more when the kill fell between a checkpoint and the pruning after it.
    assert.ok(whole.length >= 1 && whole.length <= 3, `checkpoints: ${whole.join(', ')}`);
    await cp(path.join(checkpoints, whole.at(-1)!), path.join(checkpoints, '.tmp-step-000999-1-abcd'), { recursive: true });

    const reference = await runTraining(fixtureConfig(f, 'whole', over));
    // The child process computed the same steps as this process does.
    childSteps.forEach((s) => assert.equal(s.loss, reference.losses[s.step - 1], `child step ${s.step}`));

    const log = eventLog();
    const resumed = await resumeTraining(path.join(f.dir, 'killed'), { onEvent: log.onEvent });
    const from = log.of('start')[0]!.resumed_from_step!;
    assert.equal(`step-${String(from).padStart(6, '0')}`, whole.at(-1));
    assert.ok(from >= 9);
    assert.equal(resumed.reason, 'completed');
    assert.deepEqual(resumed.losses, reference.losses, 'every step equals the uninterrupted run, bit for bit');
    assert.deepEqual(resumed.evalLosses, reference.evalLosses);
    const after = await readdir(checkpoints);
    assert.ok(!after.some((n) => n.startsWith('.')), 'temp folders are cleaned away');
    assert.deepEqual(after, ['step-000117', 'step-000120']);
  });

  it('refuses a damaged checkpoint naming the file, and from an out folder takes the newest whole one', async () => {
    const f = await trainFixture();
    const over = { steps: 6, saveEvery: 2, keepCheckpoints: 0 };
    const original = await runTraining(fixtureConfig(f, 'out', over));
    const out = path.join(f.dir, 'out');
    const ckpt = (s: number) => path.join(out, 'checkpoints', `step-00000${s}`);

    // A truncated trainer_state.json: that checkpoint is refused; the out folder resumes from the one before.
    const state = path.join(ckpt(6), 'trainer_state.json');
    const truncateState = async () => truncate(state, Math.floor((await readFile(state, 'utf8')).length / 2));
    await truncateState();
    await assert.rejects(resumeTraining(ckpt(6)), (e: unknown) => e instanceof CheckpointError && e.file === state && e.message.includes(state) && /not valid JSON/.test(e.message));
    const log = eventLog();
    const r = await resumeTraining(out, { onEvent: log.onEvent });
    assert.equal(log.of('start')[0]!.resumed_from_step, 4);
    assert.deepEqual(r.losses, original.losses);
    assert.equal(log.of('checkpoint')[0]!.path, ckpt(6), 'the damaged checkpoint is replaced');

    // A flipped byte in the optimizer state, a missing adapter file, an empty folder.
    const optimizer = path.join(ckpt(4), 'optimizer.safetensors');
    const bytes = await readFile(optimizer);
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x40;
    await writeFile(optimizer, bytes);
    await assert.rejects(resumeTraining(ckpt(4)), (e: unknown) => e instanceof CheckpointError && e.message.includes(optimizer) && /damaged/.test(e.message));
    await rm(path.join(ckpt(2), 'adapter_model.safetensors'));
    await assert.rejects(resumeTraining(ckpt(2)), (e: unknown) => e instanceof CheckpointError && e.message.includes('adapter_model.safetensors') && /missing/.test(e.message));
    await mkdir(ckpt(1));
    await truncateState();
    // Nothing whole is left: the out folder is refused, listing each damaged one.
    await assert.rejects(resumeTraining(out), /no whole checkpoint; 4 damaged/);
    await assert.rejects(resumeTraining(path.join(f.dir, 'nowhere')), /no such folder/);
  });
});
