// The job queue: training runs and comparisons, each in its own engine
// process (engine-process.ts), so a crash ends one job and never the app.
//
//   training     one at a time, in the order started; each has a run row in
//                the library (queued → running → completed | failed | stopped)
//                and an out folder <runsDir>/<job id> unless the config names one
//   comparison   starts at once, beside a training run
//
// Job status (what the UI shows) and the library's run status:
//   queued → running → completed                       run: completed
//   running → pausing → paused     (pause)             run: stopped, checkpoint kept
//   running → stopping → cancelled (cancel)            run: stopped, checkpoint kept
//   queued → cancelled             (cancel, never ran) run: stopped
//   running → failed (error, crash, out of memory)     run: failed with the reason
//   paused | failed | cancelled → queued → running (resume, same job id, a new
//                engine process, from the run's last checkpoint)
// The library has no 'paused' status: a paused run is 'stopped' there, and the
// job (kept in memory) tells pause from cancel.
//
// Progress: every 'step' and 'eval' event is appended to the run's loss series
// in the library, every 'checkpoint' becomes the run's last checkpoint. On
// completion the measured memory peak is recorded and, unless the start asked
// otherwise, the final adapter is put on the shelf.
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { resolveTrainConfig } from '../../engine/train/config.ts';
import type { TrainConfig, TrainEvent, TrainResult } from '../../engine/train/types.ts';
import { UserError } from '../../engine/model/errors.ts';
import type { Library } from '../library/library.ts';
import type { CompareJobEvent, CompareJobRequest, EngineExit, EngineLauncher, EngineProcess, FromEngine, ToEngine } from './engine-process.ts';
import { oomOffer, type OomOffer } from './oom-offer.ts';

export type JobStatus = 'queued' | 'running' | 'pausing' | 'paused' | 'stopping' | 'completed' | 'failed' | 'cancelled';

export interface JobError {
  kind: 'user' | 'internal' | 'crash';
  message: string;
}

/** A job as the app shows it. Times are ms since the Unix epoch. */
export interface Job {
  id: string;
  kind: 'train' | 'compare';
  status: JobStatus;
  name: string;
  runId: number | null;
  adapterId: string | null;
  step: number;
  totalSteps: number | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  error: JobError | null;
  lastCheckpoint: string | null;
  /** After an out-of-memory failure: smaller settings to start a new run with (acceptOomOffer). */
  oomOffer: OomOffer | null;
}

export type JobEvent =
  | { type: 'train'; jobId: string; event: TrainEvent }
  | { type: 'compare'; jobId: string; event: CompareJobEvent }
  | { type: 'status'; jobId: string; job: Job };

export interface StartTraining {
  /** The run's name (default: the data file's name). */
  name?: string;
  /** model and data required; out defaults to <runsDir>/<job id>; the rest to the engine's defaults. */
  config: Partial<TrainConfig> & { model: string; data: string };
  /** Put the final adapter on the shelf when the run completes (default true). */
  addToShelf?: boolean;
  baseModelId?: number | null;
  datasetId?: number | null;
}

export interface JobManagerOptions {
  library: Library;
  launcher: EngineLauncher;
  /** Where runs without an out folder of their own go: <runsDir>/<job id>. */
  runsDir: string;
  /** Names this machine on the run rows (for measured memory peaks); default "cpu <total memory> GiB". */
  machine?: string;
  /** Told about failures of the job layer itself (e.g. the library refusing a write); default console.error. */
  onInternalError?: (error: unknown) => void;
}

interface Entry {
  job: Job;
  config: TrainConfig | null;
  request: CompareJobRequest | null;
  addToShelf: boolean;
  process: EngineProcess | null;
  /** What the current engine process was asked to do. */
  message: ToEngine | null;
  intent: 'pause' | 'cancel' | null;
  done: Extract<TrainEvent, { type: 'done' }> | null;
  samples: Array<{ step: number; prompt: string; output: string }>;
  /** The current engine process has reported its end (finished/failed) or exited. */
  settled: boolean;
}

const OOM_MESSAGE = /out of memory/i;
const SAMPLES_KEPT = 20;

export class JobManager {
  private readonly library: Library;
  private readonly launcher: EngineLauncher;
  private readonly runsDir: string;
  /** The machine name the runs of this manager are recorded under. */
  readonly machine: string;
  private readonly onInternalError: (error: unknown) => void;
  private readonly entries = new Map<string, Entry>();
  private readonly queue: string[] = [];
  private readonly listeners = new Set<(event: JobEvent) => void>();
  private training: string | null = null;

  constructor(opts: JobManagerOptions) {
    this.library = opts.library;
    this.launcher = opts.launcher;
    this.runsDir = path.resolve(opts.runsDir);
    this.machine = opts.machine ?? `cpu ${Math.round(os.totalmem() / 2 ** 30)} GiB`;
    this.onInternalError = opts.onInternalError ?? ((e) => console.error(e));
    this.recoverRuns();
  }

  /**
   * Runs the library shows as queued or running belong to an app that has gone
   * (jobs live in memory): running ones become failed with the reason, queued
   * ones stopped. Either can be continued with resumeRun.
   */
  private recoverRuns(): void {
    for (const run of this.library.runs.listRuns('running'))
      this.write(() => this.library.runs.finishRun(run.id, { status: 'failed', failureReason: 'LoRA Studio closed while this run was training; resume it from its last checkpoint.' }));
    for (const run of this.library.runs.listRuns('queued')) this.write(() => this.library.runs.finishRun(run.id, { status: 'stopped' }));
  }

  /**
   * A job for a stopped or failed run of the library (e.g. from an earlier
   * session), so that resume() can continue it from its last checkpoint.
   */
  adoptRun(runId: number): Job {
    const existing = [...this.entries.values()].find((e) => e.job.runId === runId);
    if (existing) return { ...existing.job };
    const run = this.library.runs.get(runId);
    if (run.status !== 'stopped' && run.status !== 'failed')
      throw new UserError(`Run ${run.name} is ${run.status}; only a stopped or failed run can be picked up again.`);
    const config = resolveTrainConfig(run.config as TrainConfig);
    const id = newJobId();
    const entry = this.add({
      job: {
        ...blankJob(id, 'train', run.name), status: run.status === 'failed' ? 'failed' : 'paused', runId, step: run.step, totalSteps: run.totalSteps,
        createdAt: run.createdAt, startedAt: run.startedAt, finishedAt: run.finishedAt, lastCheckpoint: run.lastCheckpoint,
        error: run.failureReason ? { kind: 'internal', message: run.failureReason } : null,
      },
      config, request: null, addToShelf: true,
    });
    return { ...entry.job };
  }

  /** Every job event; returns the unsubscribe function. */
  on(listener: (event: JobEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  list(): Job[] {
    return [...this.entries.values()].map((e) => ({ ...e.job }));
  }

  get(jobId: string): Job {
    return { ...this.entry(jobId).job };
  }

  /** The newest 'sample' events of a training job (outputs generated at checkpoints). */
  samples(jobId: string): Array<{ step: number; prompt: string; output: string }> {
    return [...this.entry(jobId).samples];
  }

  /** Queues a training run; it starts when no other training runs. Bad settings throw a UserError naming the setting. */
  startTraining(input: StartTraining): Job {
    const id = newJobId();
    const config = resolveTrainConfig({ ...input.config, out: input.config.out ?? path.join(this.runsDir, id) });
    const name = input.name?.trim() || path.basename(config.data);
    const run = this.library.runs.create({
      name, config, machine: this.machine, baseModelId: input.baseModelId ?? null, datasetId: input.datasetId ?? null, totalSteps: config.steps,
    });
    const entry = this.add({
      job: { ...blankJob(id, 'train', name), runId: run.id, totalSteps: config.steps },
      config, request: null, addToShelf: input.addToShelf ?? true,
    });
    this.enqueue(entry, { type: 'train', jobId: id, config });
    return { ...entry.job };
  }

  /** Starts a comparison at once in its own engine process. */
  startComparison(request: CompareJobRequest, name = 'Comparison'): Job {
    if (request.adapters.length < 1 || request.adapters.length > 3)
      throw new UserError(`A comparison takes 1 to 3 adapters; ${request.adapters.length} were given.`);
    const id = newJobId();
    const entry = this.add({ job: blankJob(id, 'compare', name), config: null, request, addToShelf: false });
    this.launch(entry, { type: 'compare', jobId: id, request });
    return { ...entry.job };
  }

  /** Stops a training run after a checkpoint of its last finished step; resume continues it. */
  pause(jobId: string): Job {
    const e = this.entry(jobId);
    if (e.job.kind !== 'train') throw new UserError('Only a training run can be paused; cancel the comparison instead.');
    if (e.job.status === 'queued') throw new UserError(`${e.job.name} has not started yet; cancel it instead, or let it run.`);
    if (e.job.status !== 'running') throw new UserError(`${e.job.name} is ${e.job.status}; only a running run can be paused.`);
    e.intent = 'pause';
    this.setStatus(e, 'pausing');
    e.process?.send({ type: 'stop', jobId });
    return { ...e.job };
  }

  /** Cancels a job: a running run stops after a checkpoint (kept, so it can still be resumed); a queued one never starts. */
  cancel(jobId: string): Job {
    const e = this.entry(jobId);
    if (e.job.status === 'queued') {
      this.queue.splice(this.queue.indexOf(jobId), 1);
      // A new run never started is stopped in the library; a queued resume leaves its run as it was (stopped or failed).
      const runId = e.job.runId;
      if (runId !== null && this.library.runs.get(runId).status === 'queued') this.write(() => this.library.runs.finishRun(runId, { status: 'stopped' }));
      e.job.finishedAt = Date.now();
      this.setStatus(e, 'cancelled');
      return { ...e.job };
    }
    if (e.job.status === 'running' || e.job.status === 'pausing') {
      e.intent = 'cancel';
      this.setStatus(e, 'stopping');
      e.process?.send({ type: 'stop', jobId });
      return { ...e.job };
    }
    if (e.job.status === 'stopping') return { ...e.job };
    throw new UserError(`${e.job.name} is ${e.job.status} already; there is nothing to cancel.`);
  }

  /** Continues a paused, cancelled or failed run from its last checkpoint, in a new engine process (queued like a new run). */
  resume(jobId: string, overrides?: Partial<TrainConfig>): Job {
    const e = this.entry(jobId);
    if (e.job.kind !== 'train' || e.config === null) throw new UserError('Only a training run can be resumed; start the comparison again instead.');
    if (!['paused', 'cancelled', 'failed'].includes(e.job.status)) throw new UserError(`${e.job.name} is ${e.job.status}; only a paused, cancelled or failed run can be resumed.`);
    const checkpoint = e.job.lastCheckpoint;
    if (checkpoint === null)
      throw new UserError(`${e.job.name} wrote no checkpoint before it ended, so there is nothing to resume from; start it again as a new run.`);
    Object.assign(e.job, { error: null, oomOffer: null, finishedAt: null });
    this.enqueue(e, { type: 'resume', jobId, checkpoint, overrides });
    return { ...e.job };
  }

  /** Starts the new run an out-of-memory failure offered (oom-offer.ts says what it keeps and what it cannot). */
  acceptOomOffer(jobId: string): Job {
    const e = this.entry(jobId);
    const offer = e.job.oomOffer;
    if (!offer) throw new UserError(`${e.job.name} has no smaller settings on offer; only a run that ran out of memory has.`);
    return this.startTraining({ name: `${e.job.name} (${offer.change} smaller)`, config: offer.config, addToShelf: e.addToShelf });
  }

  /**
   * The app is quitting: queued runs stay queued in the library; running jobs
   * are asked to stop (a training run writes its checkpoint and becomes paused),
   * and whatever has not ended after `graceMs` is killed (its run marked failed,
   * with the reason).
   */
  async shutdown(graceMs = 10_000): Promise<void> {
    this.queue.length = 0;
    const active = [...this.entries.values()].filter((e) => e.process !== null && !e.settled);
    for (const e of active) {
      e.intent ??= 'pause';
      e.process!.send({ type: 'stop', jobId: e.job.id });
    }
    const deadline = Date.now() + graceMs;
    while (active.some((e) => !e.settled) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const e of this.entries.values()) e.process?.kill();
  }

  // ---- internals ----------------------------------------------------------------------------

  private entry(jobId: string): Entry {
    const e = this.entries.get(jobId);
    if (!e) throw new UserError(`There is no job ${jobId}; refresh the list of jobs.`);
    return e;
  }

  private add(init: Pick<Entry, 'job' | 'config' | 'request' | 'addToShelf'>): Entry {
    const entry: Entry = { ...init, process: null, message: null, intent: null, done: null, samples: [], settled: true };
    this.entries.set(init.job.id, entry);
    return entry;
  }

  private emit(event: JobEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch (err) {
        this.onInternalError(err);
      }
    }
  }

  private setStatus(e: Entry, status: JobStatus): void {
    e.job.status = status;
    this.emit({ type: 'status', jobId: e.job.id, job: { ...e.job } });
  }

  /** A library write that must not take the job layer down with it. */
  private write<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (err) {
      this.onInternalError(err);
      return undefined;
    }
  }

  private enqueue(e: Entry, message: ToEngine): void {
    e.message = message;
    this.queue.push(e.job.id);
    this.setStatus(e, 'queued');
    this.pump();
  }

  /** Starts the next queued training run when none is running. */
  private pump(): void {
    if (this.training !== null) return;
    const next = this.queue.shift();
    if (next === undefined) return;
    const e = this.entry(next);
    this.training = next;
    this.write(() => this.library.runs.start(e.job.runId!));
    this.launch(e, e.message!);
  }

  private launch(e: Entry, message: ToEngine): void {
    e.intent = null;
    e.done = null;
    e.settled = false;
    e.message = message;
    e.job.startedAt ??= Date.now();
    let proc: EngineProcess;
    try {
      proc = this.launcher();
    } catch (err) {
      this.fail(e, { kind: 'crash', message: `the engine could not be started (${(err as Error).message})` });
      return;
    }
    e.process = proc;
    proc.onMessage((m) => {
      if (e.process === proc) this.onMessage(e, m);
    });
    proc.onExit((exit) => {
      if (e.process === proc) this.onExit(e, exit);
    });
    this.setStatus(e, 'running');
    proc.send(message);
  }

  private onMessage(e: Entry, m: FromEngine): void {
    if (m.jobId !== e.job.id || e.settled) return;
    if (m.type === 'event') {
      if (e.job.kind === 'compare') this.emit({ type: 'compare', jobId: e.job.id, event: m.event as CompareJobEvent });
      else this.onTrainEvent(e, m.event as TrainEvent);
    } else if (m.type === 'finished') {
      if (e.job.kind === 'compare') this.complete(e);
      else void this.finishTraining(e, m.result as TrainResult);
    } else {
      const oom = m.kind === 'internal' && OOM_MESSAGE.test(m.message);
      this.fail(e, { kind: m.kind, message: m.message }, oom);
    }
  }

  private onTrainEvent(e: Entry, ev: TrainEvent): void {
    const runId = e.job.runId!;
    const runs = this.library.runs;
    switch (ev.type) {
      case 'start':
        e.job.totalSteps = ev.total_steps;
        this.write(() => runs.recordProgress(runId, { totalSteps: ev.total_steps }));
        break;
      case 'step':
        e.job.step = ev.step;
        this.write(() => runs.recordProgress(runId, { step: ev.step, train: [{ step: ev.step, loss: ev.loss, lr: ev.lr, tokensPerSecond: ev.tokens_per_second }] }));
        break;
      case 'eval':
        this.write(() => runs.recordProgress(runId, { eval: [{ step: ev.step, loss: ev.eval_loss }] }));
        break;
      case 'checkpoint':
        e.job.lastCheckpoint = ev.path;
        this.write(() => runs.recordProgress(runId, { lastCheckpoint: ev.path }));
        break;
      case 'sample':
        e.samples.push({ step: ev.step, prompt: ev.prompt, output: ev.output });
        if (e.samples.length > SAMPLES_KEPT) e.samples.shift();
        break;
      case 'done':
        e.done = ev;
        if (ev.checkpoint_path) e.job.lastCheckpoint = ev.checkpoint_path;
        break;
      case 'error':
        break; // the 'failed' message that follows ends the job
    }
    this.emit({ type: 'train', jobId: e.job.id, event: ev });
  }

  private async finishTraining(e: Entry, result: TrainResult): Promise<void> {
    e.settled = true;
    const runId = e.job.runId!;
    const done = e.done;
    const stopped = result.reason === 'stopped';
    const lastCheckpoint = result.checkpointPath || e.job.lastCheckpoint;
    e.job.lastCheckpoint = lastCheckpoint;
    this.write(() =>
      this.library.runs.finishRun(runId, {
        status: stopped ? 'stopped' : 'completed',
        memoryPeak: done?.memory ?? null,
        trainLoss: done?.train_loss ?? result.losses.at(-1) ?? null,
        evalLoss: done?.eval_loss ?? result.evalLosses.at(-1)?.loss ?? null,
        lastCheckpoint: lastCheckpoint || null,
      }),
    );
    this.release(e);
    if (!stopped && e.addToShelf) {
      try {
        const adapter = await this.library.addAdapterFromRun(runId, { folder: result.adapterPath });
        e.job.adapterId = adapter.id;
      } catch (err) {
        e.job.error = { kind: err instanceof UserError ? 'user' : 'internal', message: `The run completed, but its adapter could not be put on the shelf: ${(err as Error).message}` };
      }
    }
    e.job.finishedAt = Date.now();
    this.setStatus(e, stopped ? (e.intent === 'cancel' ? 'cancelled' : 'paused') : 'completed');
    this.next(e);
  }

  private complete(e: Entry): void {
    e.settled = true;
    this.release(e);
    e.job.finishedAt = Date.now();
    this.setStatus(e, e.intent === 'cancel' ? 'cancelled' : 'completed');
  }

  private onExit(e: Entry, exit: EngineExit): void {
    e.process = null;
    if (e.settled) return;
    const what = exit.detail ?? (exit.signal ? `the engine was stopped (${exit.signal})` : `the engine exited with code ${exit.code}`);
    const kept = e.job.kind === 'train' && e.job.lastCheckpoint ? `; the last checkpoint (step ${stepOf(e.job.lastCheckpoint) ?? '?'}) is kept: resume to continue from it` : '';
    const oom = /out of memory|memory ran out/i.test(what);
    this.fail(e, { kind: 'crash', message: `${capitalise(what)}${kept}.` }, oom);
  }

  private fail(e: Entry, error: JobError, oom = false): void {
    e.settled = true;
    e.job.error = error;
    e.job.finishedAt = Date.now();
    if (e.job.kind === 'train' && e.job.runId !== null) {
      const runId = e.job.runId;
      this.write(() => this.library.runs.finishRun(runId, { status: 'failed', failureReason: error.message }));
      if (oom && e.config) e.job.oomOffer = oomOffer(e.config, e.job.lastCheckpoint, e.job.step, e.job.totalSteps);
    }
    this.release(e);
    this.setStatus(e, 'failed');
    this.next(e);
  }

  /** The engine process of a settled job is done: end it. */
  private release(e: Entry): void {
    const proc = e.process;
    e.process = null;
    proc?.kill();
  }

  private next(e: Entry): void {
    if (this.training === e.job.id) {
      this.training = null;
      this.pump();
    }
  }
}

function newJobId(): string {
  return `job-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

function blankJob(id: string, kind: Job['kind'], name: string): Job {
  return {
    id, kind, status: 'queued', name, runId: null, adapterId: null, step: 0, totalSteps: null,
    createdAt: Date.now(), startedAt: null, finishedAt: null, error: null, lastCheckpoint: null, oomOffer: null,
  };
}

function stepOf(checkpoint: string): number | null {
  const m = /(\d+)$/.exec(path.basename(checkpoint));
  return m ? Number(m[1]) : null;
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
