// How an engine process ends, as the job layer sees it: the exit
// classification, real crashes and a real out-of-memory death of a child, and
// the smaller settings offered after running out of memory.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { resolveTrainConfig } from '../../engine/train/config.ts';
import { classifyExit, nodeChildLauncher } from '../../main/jobs/child-launcher.ts';
import type { EngineExit, EngineProcess } from '../../main/jobs/engine-process.ts';
import { JobManager } from '../../main/jobs/manager.ts';
import { oomOffer } from '../../main/jobs/oom-offer.ts';
import { jobsFixture, quickConfig, waitForEnd, type JobsFixture } from './helpers/jobs-fixtures.ts';

const OOM_ENTRY = fileURLToPath(new URL('./helpers/jobs-oom-entry.ts', import.meta.url));
const oomLauncher = nodeChildLauncher({ entry: OOM_ENTRY, execArgv: ['--max-old-space-size=48'], onStderr: () => {} });

function exitOf(p: EngineProcess): Promise<EngineExit> {
  return new Promise((resolve) => p.onExit(resolve));
}

describe('classifyExit', () => {
  test('signals we did not send are crashes with a reason for people; ours are not', () => {
    assert.deepEqual(classifyExit(null, 'SIGSEGV', false, ''), { code: null, signal: 'SIGSEGV', reason: 'crash', detail: 'the engine crashed (SIGSEGV)' });
    assert.equal(classifyExit(null, 'SIGABRT', false, '').detail, 'the engine crashed (SIGABRT)');
    assert.match(classifyExit(null, 'SIGKILL', false, '').detail!, /killed \(SIGKILL\).*memory/);
    assert.equal(classifyExit(null, 'SIGKILL', true, '').reason, 'signal');
    assert.equal(classifyExit(null, 'SIGTERM', false, '').reason, 'signal');
  });
  test('out-of-memory text on stderr makes the exit an out-of-memory crash', () => {
    const v8 = 'FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory';
    assert.deepEqual(classifyExit(134, null, false, v8), { code: 134, signal: null, reason: 'crash', detail: 'the engine ran out of memory' });
    assert.equal(classifyExit(null, 'SIGABRT', false, "terminate called after throwing an instance of 'std::bad_alloc'").detail, 'the engine ran out of memory');
  });
  test('ordinary exits stay exits, with the last stderr line for a non-zero code', () => {
    assert.deepEqual(classifyExit(0, null, false, 'noise'), { code: 0, signal: null, reason: 'exit' });
    assert.deepEqual(classifyExit(1, null, false, 'first\nError: boom\n'), { code: 1, signal: null, reason: 'exit', detail: 'the engine exited with code 1: Error: boom' });
  });
});

describe('real engine processes', () => {
  test('a SIGSEGV from outside is a crash; kill() is a signal', async () => {
    const launch = nodeChildLauncher({ onStderr: () => {} });
    const a = launch();
    const aExit = exitOf(a);
    // Let the child start before the fault.
    await new Promise((r) => setTimeout(r, 300));
    process.kill(a.pid!, 'SIGSEGV');
    assert.deepEqual(await aExit, { code: null, signal: 'SIGSEGV', reason: 'crash', detail: 'the engine crashed (SIGSEGV)' });
    const b = launch();
    const bExit = exitOf(b);
    b.kill();
    assert.equal((await bExit).reason, 'signal');
  });

  test('a child that runs out of heap is an out-of-memory crash', async () => {
    const p = oomLauncher();
    const exit = exitOf(p);
    p.send({ type: 'train', jobId: 'j', config: {} as never });
    const e = await exit;
    assert.equal(e.reason, 'crash');
    assert.equal(e.detail, 'the engine ran out of memory');
  });
});

describe('out of memory in the job manager', () => {
  let f: JobsFixture;
  before(async () => {
    f = await jobsFixture();
  });
  after(() => f.close());

  test('the failed job carries an offer of smaller settings, and the offered run completes', async () => {
    let launches = 0;
    const real = nodeChildLauncher({ onStderr: () => {} });
    const manager = new JobManager({
      library: f.library,
      // The first engine process runs out of memory; the offered run gets a real engine.
      launcher: () => (launches++ === 0 ? oomLauncher() : real()),
      runsDir: path.join(f.dir, 'appdata', 'runs'),
      onInternalError: (e) => f.internalErrors.push(e),
    });
    const events: Parameters<Parameters<JobManager['on']>[0]>[0][] = [];
    manager.on((e) => events.push(e));
    const wait = (jobId: string) =>
      new Promise<ReturnType<JobManager['get']>>((resolve) => {
        const check = () => {
          const j = manager.get(jobId);
          if (['completed', 'failed', 'cancelled', 'paused'].includes(j.status)) resolve(j);
          else setTimeout(check, 50);
        };
        check();
      });
    const job = manager.startTraining({ name: 'big', config: quickConfig(f, { batchSize: 2, seqLen: 64 }) });
    const failed = await wait(job.id);
    assert.equal(failed.status, 'failed');
    assert.deepEqual(failed.error, { kind: 'crash', message: 'The engine ran out of memory.' });
    assert.equal(f.library.runs.get(failed.runId!).failureReason, 'The engine ran out of memory.');
    const offer = failed.oomOffer;
    assert.ok(offer);
    // seq-len 64 is below every rung of the sequence ladder, so the batch is next.
    assert.equal(offer.change, 'batchSize');
    assert.equal(offer.config.batchSize, 1);
    assert.equal(offer.config.gradAccum, 2);
    assert.equal(offer.config.initAdapter, null, 'no checkpoint was written, so nothing to start from');

    const next = manager.acceptOomOffer(job.id);
    assert.notEqual(next.id, job.id);
    const done = await wait(next.id);
    assert.equal(done.status, 'completed', JSON.stringify(done.error));
    assert.equal(f.library.runs.get(done.runId!).config.batchSize, 1);
    await manager.shutdown();
  });
});

describe('oomOffer', () => {
  const base = resolveTrainConfig({ model: '/m', data: '/d.jsonl', out: '/o', seqLen: 1024, batchSize: 4, gradAccum: 1, rank: 16, alpha: 32, steps: 100 });
  const ckpt = '/o/checkpoints/step-000040';

  test('first a shorter sequence, from the checkpoint\'s adapter, for the steps that were left', () => {
    const o = oomOffer(base, ckpt, 40, 100)!;
    assert.equal(o.change, 'seqLen');
    assert.equal(o.config.seqLen, 512);
    assert.equal(o.config.initAdapter, ckpt);
    assert.equal(o.config.steps, 60);
    assert.match(o.explanation, /optimizer state .* start afresh/);
  });
  test('then the batch (same sequences per step), then QLoRA, then the rank (a fresh adapter)', () => {
    const batch = oomOffer({ ...base, seqLen: 256 }, ckpt, 40, 100)!;
    assert.deepEqual([batch.change, batch.config.batchSize, batch.config.gradAccum], ['batchSize', 2, 2]);
    const q = oomOffer({ ...base, seqLen: 256, batchSize: 1 }, ckpt, 40, 100)!;
    assert.deepEqual([q.change, q.config.method, q.config.initAdapter], ['method', 'qlora', ckpt]);
    const r = oomOffer({ ...base, seqLen: 256, batchSize: 1, method: 'qlora' }, ckpt, 40, 100)!;
    assert.deepEqual([r.change, r.config.rank, r.config.alpha, r.config.initAdapter, r.config.steps], ['rank', 8, 16, null, 100]);
    assert.equal(oomOffer({ ...base, seqLen: 256, batchSize: 1, method: 'qlora', rank: 4 }, ckpt, 40, 100), null);
  });
});
