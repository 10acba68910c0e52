// Training runs: their configuration, status, progress, loss series and the
// memory they used. Status moves along
//   queued → running → completed | failed | stopped
//   queued → failed | stopped            (never started)
//   failed | stopped → running            (resumed from the last checkpoint)
// and any other change is refused. Loss points go in run_points, one row per
// optimizer step or evaluation, so appending is an insert; a resumed run that
// repeats a step replaces that point.
import type Database from 'better-sqlite3';
import { LibraryError } from './errors.ts';
import {
  checkInput, fromJsonColumn, MemoryPeakSchema, RunConfigSchema, toJsonColumn,
  type MemoryPeak, type RunConfig, type RunStatus,
} from './schemas.ts';
import { z } from 'zod';

export interface RunRecord {
  id: number;
  name: string;
  baseModelId: number | null;
  datasetId: number | null;
  config: RunConfig;
  machine: string;
  status: RunStatus;
  failureReason: string | null;
  outDir: string;
  lastCheckpoint: string | null;
  step: number; // optimizer steps done
  totalSteps: number | null;
  trainLoss: number | null; // final
  evalLoss: number | null; // final
  memoryPeak: MemoryPeak | null;
  createdAt: number; // ms since the Unix epoch
  startedAt: number | null;
  finishedAt: number | null;
  updatedAt: number;
}

export interface NewRun {
  name: string;
  config: RunConfig; // the engine's TrainConfig
  machine: string; // names the machine (for measuredPeaks), e.g. "NVIDIA GeForce RTX 4090 24 GiB" or "cpu 64 GiB"
  baseModelId?: number | null;
  datasetId?: number | null;
  totalSteps?: number | null;
}

export interface TrainPoint {
  step: number;
  loss: number;
  lr?: number | null;
  tokensPerSecond?: number | null;
}
export interface EvalPoint {
  step: number;
  loss: number;
}

export interface RunProgress {
  step?: number;
  totalSteps?: number | null;
  lastCheckpoint?: string | null;
  train?: readonly TrainPoint[];
  eval?: readonly EvalPoint[];
}

export interface RunFinish {
  status: 'completed' | 'failed' | 'stopped';
  failureReason?: string | null; // required for 'failed'
  memoryPeak?: MemoryPeak | null;
  trainLoss?: number | null;
  evalLoss?: number | null;
  lastCheckpoint?: string | null;
}

/** What a finished run measured, for the memory estimator to learn from. */
export interface MeasuredPeak {
  runId: number;
  machine: string;
  status: 'completed' | 'stopped';
  finishedAt: number;
  config: RunConfig;
  base: { fingerprint: string; architecture: string; parameterCount: number } | null;
  peak: MemoryPeak;
}

interface RunRow {
  id: number;
  name: string;
  base_model_id: number | null;
  dataset_id: number | null;
  config_json: string;
  machine: string;
  status: RunStatus;
  failure_reason: string | null;
  out_dir: string;
  last_checkpoint: string | null;
  step: number;
  total_steps: number | null;
  train_loss: number | null;
  eval_loss: number | null;
  memory_peak_json: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  updated_at: number;
}

const NEXT: Record<RunStatus, readonly RunStatus[]> = {
  queued: ['running', 'failed', 'stopped'],
  running: ['completed', 'failed', 'stopped'],
  failed: ['running'],
  stopped: ['running'],
  completed: [],
};

const step = z.number().int().nonnegative();
const loss = z.number().refine(Number.isFinite, 'must be a finite number');
const optionalRate = z.number().refine(Number.isFinite, 'must be a finite number').nullable().optional();
const ProgressSchema = z.object({
  step: step.optional(),
  totalSteps: step.nullable().optional(),
  lastCheckpoint: z.string().nullable().optional(),
  train: z.array(z.object({ step, loss, lr: optionalRate, tokensPerSecond: optionalRate })).optional(),
  eval: z.array(z.object({ step, loss })).optional(),
});
const NewRunSchema = z.object({
  name: z.string().trim().min(1).max(200),
  config: RunConfigSchema,
  machine: z.string().max(500),
  baseModelId: z.number().int().nullable().optional(),
  datasetId: z.number().int().nullable().optional(),
  totalSteps: step.nullable().optional(),
});

export class RunLog {
  private readonly insert: Database.Statement;
  private readonly byId: Database.Statement;
  private readonly list: Database.Statement;
  private readonly listByStatus: Database.Statement;
  private readonly setStatus: Database.Statement;
  private readonly progress: Database.Statement;
  private readonly finish: Database.Statement;
  private readonly addPoint: Database.Statement;
  private readonly points: Database.Statement;
  private readonly peaks: Database.Statement;
  private readonly baseExists: Database.Statement;
  private readonly datasetExists: Database.Statement;

  constructor(
    private readonly db: Database.Database,
    private readonly file: string,
  ) {
    this.insert = db.prepare(`
      INSERT INTO runs (name, base_model_id, dataset_id, config_json, machine, status, out_dir, total_steps, created_at, updated_at)
      VALUES (@name, @baseModelId, @datasetId, @configJson, @machine, 'queued', @outDir, @totalSteps, @now, @now)`);
    this.byId = db.prepare('SELECT * FROM runs WHERE id = ?');
    this.list = db.prepare('SELECT * FROM runs ORDER BY created_at DESC, id DESC');
    this.listByStatus = db.prepare('SELECT * FROM runs WHERE status = ? ORDER BY created_at DESC, id DESC');
    this.setStatus = db.prepare(`
      UPDATE runs SET status = @status, failure_reason = @failureReason, updated_at = @now,
        started_at = CASE WHEN @status = 'running' THEN coalesce(started_at, @now) ELSE started_at END,
        finished_at = CASE WHEN @status = 'running' THEN NULL ELSE @now END
      WHERE id = @id`);
    this.progress = db.prepare(`
      UPDATE runs SET step = coalesce(@step, step), total_steps = CASE WHEN @setTotal THEN @totalSteps ELSE total_steps END,
        last_checkpoint = coalesce(@lastCheckpoint, last_checkpoint), updated_at = @now
      WHERE id = @id`);
    this.finish = db.prepare(`
      UPDATE runs SET memory_peak_json = coalesce(@memoryPeakJson, memory_peak_json), train_loss = coalesce(@trainLoss, train_loss),
        eval_loss = coalesce(@evalLoss, eval_loss), last_checkpoint = coalesce(@lastCheckpoint, last_checkpoint)
      WHERE id = @id`);
    this.addPoint = db.prepare(`
      INSERT OR REPLACE INTO run_points (run_id, series, step, loss, lr, tokens_per_second)
      VALUES (@runId, @series, @step, @loss, @lr, @tokensPerSecond)`);
    this.points = db.prepare('SELECT series, step, loss, lr, tokens_per_second FROM run_points WHERE run_id = ? ORDER BY series, step');
    this.peaks = db.prepare(`
      SELECT r.*, b.fingerprint AS base_fingerprint, b.architecture AS base_architecture, b.parameter_count AS base_parameter_count
      FROM runs r LEFT JOIN base_models b ON b.id = r.base_model_id
      WHERE r.memory_peak_json IS NOT NULL AND r.status IN ('completed', 'stopped') AND (@machine IS NULL OR r.machine = @machine)
      ORDER BY r.finished_at, r.id`);
    this.baseExists = db.prepare('SELECT 1 FROM base_models WHERE id = ?');
    this.datasetExists = db.prepare('SELECT 1 FROM datasets WHERE id = ?');
  }

  private record(row: RunRow): RunRecord {
    const where = { file: this.file, table: 'runs', id: row.id };
    return {
      id: row.id, name: row.name, baseModelId: row.base_model_id, datasetId: row.dataset_id,
      config: fromJsonColumn(RunConfigSchema, row.config_json, { ...where, column: 'config_json' }) as RunConfig,
      machine: row.machine, status: row.status, failureReason: row.failure_reason, outDir: row.out_dir,
      lastCheckpoint: row.last_checkpoint, step: row.step, totalSteps: row.total_steps, trainLoss: row.train_loss,
      evalLoss: row.eval_loss,
      memoryPeak: row.memory_peak_json === null ? null : fromJsonColumn(MemoryPeakSchema, row.memory_peak_json, { ...where, column: 'memory_peak_json' }),
      createdAt: row.created_at, startedAt: row.started_at, finishedAt: row.finished_at, updatedAt: row.updated_at,
    };
  }

  create(input: NewRun): RunRecord {
    const c = checkInput(NewRunSchema, input, 'The run');
    if (c.baseModelId != null && !this.baseExists.get(c.baseModelId))
      throw new LibraryError(`There is no base model ${c.baseModelId} in the library; add the model folder before creating the run.`, this.file);
    if (c.datasetId != null && !this.datasetExists.get(c.datasetId))
      throw new LibraryError(`There is no dataset ${c.datasetId} in the library; add the data file before creating the run.`, this.file);
    const info = this.insert.run({
      name: c.name, baseModelId: c.baseModelId ?? null, datasetId: c.datasetId ?? null,
      configJson: JSON.stringify(c.config), // every field as given, the checked ones included
      machine: c.machine, outDir: c.config.out, totalSteps: c.totalSteps ?? null, now: Date.now(),
    });
    return this.get(Number(info.lastInsertRowid));
  }

  find(id: number): RunRecord | null {
    const row = this.byId.get(id) as RunRow | undefined;
    return row ? this.record(row) : null;
  }

  get(id: number): RunRecord {
    const found = this.find(id);
    if (!found) throw new LibraryError(`There is no run ${id} in the library; refresh the list of runs.`, this.file);
    return found;
  }

  listRuns(status?: RunStatus): RunRecord[] {
    const rows = (status ? this.listByStatus.all(status) : this.list.all()) as RunRow[];
    return rows.map((r) => this.record(r));
  }

  private move(id: number, to: RunStatus, failureReason: string | null): void {
    const from = this.get(id).status;
    if (!NEXT[from].includes(to))
      throw new LibraryError(`Run ${id} is ${from} and cannot become ${to}` + (NEXT[from].length ? ` (it can become ${NEXT[from].join(' or ')}).` : '.'), this.file);
    this.setStatus.run({ id, status: to, failureReason, now: Date.now() });
  }

  /** queued, failed or stopped → running (a resume keeps the points so far). */
  start(id: number): RunRecord {
    this.move(id, 'running', null);
    return this.get(id);
  }

  /** Step, checkpoint and new loss points of a running run, in one transaction. */
  recordProgress(id: number, progress: RunProgress): void {
    const p = checkInput(ProgressSchema, progress, 'The run progress');
    const status = this.get(id).status;
    if (status !== 'running') throw new LibraryError(`Run ${id} is ${status}, not running; start it before recording progress.`, this.file);
    this.db.transaction(() => {
      this.progress.run({
        id, step: p.step ?? null, setTotal: p.totalSteps !== undefined ? 1 : 0, totalSteps: p.totalSteps ?? null,
        lastCheckpoint: p.lastCheckpoint ?? null, now: Date.now(),
      });
      for (const t of p.train ?? [])
        this.addPoint.run({ runId: id, series: 'train', step: t.step, loss: t.loss, lr: t.lr ?? null, tokensPerSecond: t.tokensPerSecond ?? null });
      for (const e of p.eval ?? []) this.addPoint.run({ runId: id, series: 'eval', step: e.step, loss: e.loss, lr: null, tokensPerSecond: null });
    })();
  }

  /** Ends a run: completed, failed (with the reason) or stopped, with what it measured. */
  finishRun(id: number, end: RunFinish): RunRecord {
    if (end.status === 'failed' && !end.failureReason?.trim())
      throw new LibraryError(`Run ${id}: a failed run needs its failure reason, so the user can see what went wrong.`, this.file);
    const memoryPeakJson = end.memoryPeak ? toJsonColumn(MemoryPeakSchema, end.memoryPeak, 'The memory peak') : null;
    const losses = checkInput(z.object({ trainLoss: loss.nullable().optional(), evalLoss: loss.nullable().optional() }), { trainLoss: end.trainLoss, evalLoss: end.evalLoss }, 'The final losses');
    this.db.transaction(() => {
      this.move(id, end.status, end.status === 'failed' ? end.failureReason!.trim() : null);
      this.finish.run({ id, memoryPeakJson, trainLoss: losses.trainLoss ?? null, evalLoss: losses.evalLoss ?? null, lastCheckpoint: end.lastCheckpoint ?? null });
    })();
    return this.get(id);
  }

  /** The loss series of a run, each ordered by step. */
  series(id: number): { train: Required<TrainPoint>[]; eval: EvalPoint[] } {
    this.get(id);
    const rows = this.points.all(id) as Array<{ series: 'train' | 'eval'; step: number; loss: number; lr: number | null; tokens_per_second: number | null }>;
    return {
      train: rows.filter((r) => r.series === 'train').map((r) => ({ step: r.step, loss: r.loss, lr: r.lr, tokensPerSecond: r.tokens_per_second })),
      eval: rows.filter((r) => r.series === 'eval').map((r) => ({ step: r.step, loss: r.loss })),
    };
  }

  /** Memory peaks of completed and stopped runs (on `machine` only, when given), oldest first. */
  measuredPeaks(machine?: string): MeasuredPeak[] {
    const rows = this.peaks.all({ machine: machine ?? null }) as Array<RunRow & { base_fingerprint: string | null; base_architecture: string | null; base_parameter_count: number | null }>;
    return rows.map((row) => {
      const r = this.record(row);
      return {
        runId: r.id, machine: r.machine, status: r.status as 'completed' | 'stopped', finishedAt: r.finishedAt ?? r.updatedAt, config: r.config,
        base: row.base_fingerprint === null ? null : { fingerprint: row.base_fingerprint, architecture: row.base_architecture!, parameterCount: row.base_parameter_count! },
        peak: r.memoryPeak!,
      };
    });
  }
}
