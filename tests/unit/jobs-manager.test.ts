// The job manager over real engine child processes on a tiny model: a run from
// start to the shelf, cancel with its checkpoint kept, a crash of the engine
// process and the resume after it, and a streamed comparison.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TrainEvent } from '../../engine/train/types.ts';
import type { CompareJobEvent } from '../../main/jobs/engine-process.ts';
import { nodeChildLauncher } from '../../main/jobs/child-launcher.ts';
import { JobManager, type Job, type JobEvent } from '../../main/jobs/manager.ts';
import { CAPITALS, jobsFixture, quickConfig, waitFor, waitForEnd, type JobsFixture } from './helpers/jobs-fixtures.ts';

const trainEvents = (f: JobsFixture, jobId: string): TrainEvent[] =>
  f.events.flatMap((e) => (e.type === 'train' && e.jobId === jobId ? [e.event] : []));
const isTrain = (jobId: string, type: TrainEvent['type']) => (e: JobEvent) => e.type === 'train' && e.jobId === jobId && e.event.type === type;

describe('JobManager with a real engine process', () => {
  let f: JobsFixture;
  let adapterFolder = '';
  before(async () => {
    f = await jobsFixture();
  });
  after(() => f.close());

  test('a run goes from queued to completed, records its losses and memory peak, and puts its adapter on the shelf', async () => {
    const job = f.manager.startTraining({ name: 'capitals', config: quickConfig(f) });
    assert.equal(job.kind, 'train');
    assert.ok(job.runId !== null);
    const end = await waitForEnd(f, job.id);
    assert.equal(end.status, 'completed', JSON.stringify(end.error));
    assert.equal(end.step, 4);

    const events = trainEvents(f, job.id);
    assert.deepEqual(events.filter((e) => e.type === 'step').map((e) => e.step), [1, 2, 3, 4]);
    assert.equal(events.at(-1)?.type, 'done');
    const statuses = f.events.filter((e) => e.type === 'status' && e.jobId === job.id).map((e) => (e as Extract<JobEvent, { type: 'status' }>).job.status);
    assert.deepEqual(statuses, ['queued', 'running', 'completed']);

    const run = f.library.runs.get(job.runId!);
    assert.equal(run.status, 'completed');
    assert.equal(run.outDir, path.join(f.dir, 'appdata', 'runs', job.id));
    assert.equal(run.step, 4);
    assert.ok(run.memoryPeak && run.memoryPeak.peak_bytes > 0, 'the measured memory peak is recorded');
    const series = f.library.runs.series(job.runId!);
    const steps = events.filter((e): e is Extract<TrainEvent, { type: 'step' }> => e.type === 'step');
    assert.deepEqual(series.train.map((p) => [p.step, p.loss]), steps.map((s) => [s.step, s.loss]));
    assert.ok(series.eval.length >= 1, 'the final evaluation is in the eval series');

    assert.ok(end.adapterId);
    const shelf = f.library.listAdapters();
    const adapter = shelf.find((a) => a.id === end.adapterId);
    assert.ok(adapter, 'the adapter is on the shelf');
    assert.equal(adapter.name, 'capitals');
    adapterFolder = f.library.adapterFolder(adapter);
    assert.ok(existsSync(path.join(adapterFolder, 'adapter_config.json')));
    assert.deepEqual(f.internalErrors, []);
  });

  test('cancel mid-run stops after a checkpoint, which is kept', async () => {
    const job = f.manager.startTraining({ config: quickConfig(f, { steps: 400 }) });
    await waitFor(f, isTrain(job.id, 'step'));
    assert.equal(f.manager.cancel(job.id).status, 'stopping');
    const end = await waitForEnd(f, job.id);
    assert.equal(end.status, 'cancelled');
    assert.equal(end.adapterId, null, 'a cancelled run is not put on the shelf');
    assert.ok(end.step >= 1 && end.step < 400);
    assert.ok(end.lastCheckpoint && existsSync(path.join(end.lastCheckpoint, 'trainer_state.json')), `checkpoint kept: ${end.lastCheckpoint}`);
    const run = f.library.runs.get(end.runId!);
    assert.equal(run.status, 'stopped');
    assert.equal(run.lastCheckpoint, end.lastCheckpoint);
    const done = trainEvents(f, job.id).find((e) => e.type === 'done');
    assert.equal(done?.type === 'done' && done.reason, 'stopped');
  });

  test('pause stops after a checkpoint (the run is stopped in the library), and resume finishes it', async () => {
    const job = f.manager.startTraining({ config: quickConfig(f, { steps: 400 }) });
    await waitFor(f, isTrain(job.id, 'step'));
    assert.equal(f.manager.pause(job.id).status, 'pausing');
    const paused = await waitForEnd(f, job.id);
    assert.equal(paused.status, 'paused');
    assert.equal(f.library.runs.get(job.runId!).status, 'stopped');
    assert.ok(paused.lastCheckpoint && existsSync(paused.lastCheckpoint));
    assert.throws(() => f.manager.pause(job.id), /only a running run can be paused/);

    const mark = f.events.length;
    f.manager.resume(job.id, { steps: paused.step + 1 });
    const end = await waitForEnd(f, job.id, mark);
    assert.equal(end.status, 'completed', JSON.stringify(end.error));
    assert.equal(end.step, paused.step + 1);
    // The loss series runs on from the paused step without a gap.
    assert.deepEqual(f.library.runs.series(job.runId!).train.map((p) => p.step), Array.from({ length: paused.step + 1 }, (_, i) => i + 1));
  });

  test('a crash of the engine process fails the job with the reason, keeps the checkpoint, and the resume completes', async () => {
    const job = f.manager.startTraining({ config: quickConfig(f, { steps: 400, saveEvery: 2 }) });
    await waitFor(f, isTrain(job.id, 'checkpoint'));
    const proc = f.processes.at(-1)!;
    process.kill(proc.pid!, 'SIGKILL');
    const failed = await waitForEnd(f, job.id);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.error?.kind, 'crash');
    assert.match(failed.error!.message, /SIGKILL/);
    assert.match(failed.error!.message, /checkpoint \(step \d+\) is kept/);
    assert.ok(failed.lastCheckpoint && existsSync(failed.lastCheckpoint));
    const run = f.library.runs.get(failed.runId!);
    assert.equal(run.status, 'failed');
    assert.equal(run.failureReason, failed.error!.message);
    const checkpointStep = Number(/(\d+)$/.exec(failed.lastCheckpoint)![1]);

    // The manager still works: the same job resumes in a new engine process.
    const mark = f.events.length;
    const resumed = f.manager.resume(job.id, { steps: checkpointStep + 2 });
    assert.equal(resumed.status, 'running', 'no other training runs, so it starts at once');
    const end = await waitForEnd(f, job.id, mark);
    assert.equal(end.status, 'completed', JSON.stringify(end.error));
    assert.equal(end.step, checkpointStep + 2);
    const start = f.events.slice(mark).find(isTrain(job.id, 'start'));
    assert.equal(start?.type === 'train' && start.event.type === 'start' && start.event.resumed_from_step, checkpointStep);
    assert.equal(f.library.runs.get(job.runId!).status, 'completed');
    assert.ok(end.adapterId);
  });

  test('one training runs at a time: the second waits in the queue, and a comparison runs beside them', async () => {
    const first = f.manager.startTraining({ name: 'first', config: quickConfig(f, { steps: 3 }) });
    const second = f.manager.startTraining({ name: 'second', config: quickConfig(f, { steps: 2 }) });
    assert.equal(f.manager.get(first.id).status, 'running');
    assert.equal(second.status, 'queued');
    assert.equal(f.library.runs.get(second.runId!).status, 'queued');
    const compare = f.manager.startComparison({
      model: f.model, method: 'lora', adapters: [adapterFolder], prompt: 'Hi', sampling: { greedy: true }, seed: 1, maxTokens: 4,
    });
    assert.equal(compare.status, 'running', 'a comparison does not wait for the training queue');
    const third = f.manager.startTraining({ name: 'third', config: quickConfig(f, { steps: 2 }) });
    assert.equal(f.manager.cancel(third.id).status, 'cancelled', 'a queued run is cancelled at once');
    assert.equal(f.library.runs.get(third.runId!).status, 'stopped');
    const firstEnd = await waitForEnd(f, first.id);
    const secondEnd = await waitForEnd(f, second.id);
    assert.equal(firstEnd.status, 'completed');
    assert.equal(secondEnd.status, 'completed');
    const order = f.events.filter((e) => e.type === 'status' && (e.jobId === first.id || e.jobId === second.id)).map((e) => `${e.jobId === first.id ? 'first' : 'second'}:${(e as Extract<JobEvent, { type: 'status' }>).job.status}`);
    assert.ok(order.indexOf('first:completed') < order.indexOf('second:running'), order.join(' '));
    assert.equal((await waitForEnd(f, compare.id)).status, 'completed');
    assert.equal(f.events.filter((e) => e.type === 'status' && e.jobId === third.id && e.job.status === 'running').length, 0, 'the cancelled run never started');
  });

  test('bad data fails the job as the user\'s error, naming the line', async () => {
    const data = path.join(f.dir, 'bad.jsonl');
    const good = readFileSync(CAPITALS, 'utf8').split('\n').slice(0, 2).join('\n');
    writeFileSync(data, `${good}\n{"messages": [{"role": "user"}]}\n`);
    const job = f.manager.startTraining({ config: quickConfig(f, { data }) });
    const end = await waitForEnd(f, job.id);
    assert.equal(end.status, 'failed');
    assert.equal(end.error?.kind, 'user');
    assert.match(end.error!.message, /bad\.jsonl:3: messages\[0\]\.content/);
    assert.equal(f.library.runs.get(end.runId!).status, 'failed');
  });

  test('a comparison streams tokens for the base and the adapter, same seed', async () => {
    assert.ok(adapterFolder, 'needs the adapter of the first test');
    const job = f.manager.startComparison({
      model: f.model, method: 'lora', adapters: [adapterFolder, adapterFolder], prompt: 'What is the capital of France?',
      sampling: { temperature: 0.8, topK: 20 }, seed: 7, maxTokens: 12,
    });
    assert.equal(job.kind, 'compare');
    const end = await waitForEnd(f, job.id);
    assert.equal(end.status, 'completed', JSON.stringify(end.error));
    const events = f.events.flatMap((e) => (e.type === 'compare' && e.jobId === job.id ? [e.event] : []));
    const text = (side: CompareJobEvent['side']) => events.filter((e) => e.type === 'token' && e.side === side).map((e) => (e as { text: string }).text).join('');
    const done = events.filter((e) => e.type === 'side-done');
    assert.deepEqual(done.map((e) => e.side), ['base', 0, 1]);
    assert.ok(text('base').length > 0 && text(0).length > 0, 'both sides streamed text');
    // The same adapter twice with the same seed gives the same output.
    assert.equal(text(0), text(1));
    assert.ok(done.every((e) => e.type === 'side-done' && ['eos', 'length', 'stop'].includes(e.finishReason)));
  });

  test('shutdown asks running runs to stop: they checkpoint and end paused, so they can be resumed later', async () => {
    const job = f.manager.startTraining({ config: quickConfig(f, { steps: 400 }) });
    await waitFor(f, isTrain(job.id, 'step'));
    await f.manager.shutdown();
    const j = f.manager.get(job.id);
    assert.equal(j.status, 'paused');
    assert.ok(j.lastCheckpoint && existsSync(j.lastCheckpoint));
    assert.equal(f.library.runs.get(job.runId!).status, 'stopped');
  });

  test('a new manager (the app restarted) fails runs left running, and picks up a stopped run to resume it', async () => {
    const stopped = f.library.runs.listRuns('stopped')[0]!;
    const orphan = f.library.runs.create({ name: 'orphan', config: { ...stopped.config, out: path.join(f.dir, 'orphan') }, machine: 'test machine' });
    f.library.runs.start(orphan.id);
    const launch = nodeChildLauncher({ onStderr: () => {} });
    const manager = new JobManager({ library: f.library, launcher: launch, runsDir: path.join(f.dir, 'appdata', 'runs') });
    const left = f.library.runs.get(orphan.id);
    assert.equal(left.status, 'failed');
    assert.match(left.failureReason!, /closed while this run was training/);

    const job = manager.adoptRun(stopped.id);
    assert.equal(job.status, 'paused');
    assert.equal(job.lastCheckpoint, stopped.lastCheckpoint);
    manager.resume(job.id, { steps: stopped.step + 1 });
    const end = await new Promise<Job>((resolve) => manager.on((e) => {
      if (e.type === 'status' && e.jobId === job.id && ['completed', 'failed'].includes(e.job.status)) resolve(e.job);
    }));
    assert.equal(end.status, 'completed', JSON.stringify(end.error));
    assert.equal(f.library.runs.get(stopped.id).step, stopped.step + 1);
    await manager.shutdown();
  });
});
