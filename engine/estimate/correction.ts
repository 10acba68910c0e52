// The estimate corrected by what earlier runs on this machine measured.
//
// For each finished run (its settings and the engine's measured peaks), the
// estimate of that run's own settings is made again, and each category's
// ratio measured / estimated is taken (each category's own peak over the run
// against its own peak in the plan), as are the engine total's ratio and the
// process baseline's: (RSS − engine peak total) / the assumed baseline. RSS is
// read when the run ends, with the model still loaded, so subtracting the
// engine's peak total leaves what Node, the loader, the data pipeline and the
// addon hold.
//
// A new estimate is corrected, per category, by the largest ratio among the
// comparable runs (same method), clamped to [1, 2]: the correction only ever
// adds a safety margin (a run that used less than estimated lowers nothing),
// and one odd measurement cannot more than double a category. Runs whose
// estimate cannot be made again (model folder gone, settings the engine no
// longer takes) are left out.
//
// Applied: categories at the step's peak × their ratios, summed, and at least
// the engine total × its ratio; the CPU process baseline × its ratio (a GPU's
// overheads, the CUDA context and cuBLAS workspace, are not measured here).
import type { Projection } from '../api.ts';
import { MEMORY_CATEGORIES, type MemoryCategory } from '../native/binding.ts';
import { UserError } from '../model/errors.ts';
import type { EstimateDevice } from './device.ts';
import { CPU_PROCESS_BASELINE_BYTES, estimateMemory, type MemoryEstimate, type RunChoices } from './estimate.ts';
import { budgetOf, FIT_SAFETY_MARGIN, fitSettings, type FitResult, type FixedChoices } from './fit.ts';
import { resolveModelShape, type ModelShape } from './model-source.ts';
import type { TrainMethod } from './plan.ts';

export const CORRECTION_MIN = 1;
export const CORRECTION_MAX = 2;
/** Used when a stored run configuration leaves a field out (engine/train/config.ts TRAIN_DEFAULTS). */
const MiB = 1024 * 1024;
const RUN_DEFAULTS = { seqLen: 512, batchSize: 1, gradientCheckpointing: true } as const;

/** What the correction has a ratio for: each engine category, the engine total, the CPU process baseline. */
export type CorrectionKey = MemoryCategory | 'total' | 'process baseline';
export const CORRECTION_KEYS: readonly CorrectionKey[] = [...MEMORY_CATEGORIES, 'total', 'process baseline'];

/** A finished run on this machine: its settings and what the engine measured (main/library MeasuredPeak fits this shape). */
export interface MeasuredRun {
  runId: number;
  config: {
    model: string; // the base model folder (or a preset name)
    method: TrainMethod;
    rank: number;
    targets: readonly Projection[];
    seqLen?: number;
    batchSize?: number;
    gradientCheckpointing?: boolean;
  };
  /** Bytes: each category's peak over the run, the total's peak, the process RSS at the end (0: not recorded). */
  peak: { peak_bytes: number; categories: Record<MemoryCategory, number>; rss_bytes: number };
}

/** One run's measured / estimated ratios (unclamped); a key is absent where the estimate is 0 or nothing was recorded. */
export interface RunRatios {
  runId: number;
  method: TrainMethod;
  ratios: Partial<Record<CorrectionKey, number>>;
}

export interface CorrectionFactor {
  /** The largest ratio seen, clamped to [1, 2]. */
  ratio: number;
  /** How many runs had a ratio for this key. */
  runs: number;
}

export interface MemoryCorrection {
  method: TrainMethod;
  /** Comparable runs (same method) it is based on. */
  runs: number;
  factors: Partial<Record<CorrectionKey, CorrectionFactor>>;
}

export interface CorrectedEstimate {
  correction: MemoryCorrection;
  /** Each category at the step's peak, corrected (bytes). */
  categories: Record<MemoryCategory, number>;
  /** Each category's own peak, corrected (bytes). */
  categoryPeaks: Record<MemoryCategory, number>;
  engineBytes: number;
  overheadBytes: number;
  totalBytes: number;
  fits: boolean;
  marginBytes: number;
  /** E.g. "corrected by 3 earlier runs on this machine: activations +4%". */
  sentence: string;
}

function choicesOf(run: MeasuredRun): RunChoices {
  const c = run.config;
  return {
    method: c.method, rank: c.rank, targets: [...c.targets],
    seqLen: c.seqLen ?? RUN_DEFAULTS.seqLen, batch: c.batchSize ?? RUN_DEFAULTS.batchSize,
    checkpointing: c.gradientCheckpointing ?? RUN_DEFAULTS.gradientCheckpointing,
  };
}

/**
 * Measured / estimated for each run, its estimate made again for `device`
 * (the CPU the runs trained on, whose thread count sizes the workspace).
 */
export async function measuredRatios(runs: readonly MeasuredRun[], device: EstimateDevice): Promise<RunRatios[]> {
  const shapes = new Map<string, Promise<ModelShape | null>>();
  const shapeOf = (model: string) => {
    let s = shapes.get(model);
    if (!s) shapes.set(model, (s = resolveModelShape(model).catch((e: unknown) => (e instanceof UserError ? null : Promise.reject(e)))));
    return s;
  };
  const out: RunRatios[] = [];
  for (const run of runs) {
    const shape = await shapeOf(run.config.model);
    if (!shape) continue;
    let est: MemoryEstimate;
    try {
      est = estimateMemory(shape, choicesOf(run), device);
    } catch (e) {
      if (e instanceof UserError) continue;
      throw e;
    }
    const ratios: Partial<Record<CorrectionKey, number>> = {};
    for (const c of MEMORY_CATEGORIES) if (est.categoryPeaks[c] > 0) ratios[c] = run.peak.categories[c] / est.categoryPeaks[c];
    if (est.engineBytes > 0) ratios.total = run.peak.peak_bytes / est.engineBytes;
    if (run.peak.rss_bytes > 0) ratios['process baseline'] = Math.max(0, run.peak.rss_bytes - run.peak.peak_bytes) / CPU_PROCESS_BASELINE_BYTES;
    out.push({ runId: run.runId, method: run.config.method, ratios });
  }
  return out;
}

const clamp = (r: number) => Math.min(CORRECTION_MAX, Math.max(CORRECTION_MIN, r));

/** The correction for an estimate with `method`: the largest ratio per key among runs of that method; null without any. */
export function correctionFor(ratios: readonly RunRatios[], method: TrainMethod): MemoryCorrection | null {
  const comparable = ratios.filter((r) => r.method === method);
  if (comparable.length === 0) return null;
  const factors: Partial<Record<CorrectionKey, CorrectionFactor>> = {};
  for (const key of CORRECTION_KEYS) {
    const seen = comparable.map((r) => r.ratios[key]).filter((v): v is number => v !== undefined && Number.isFinite(v));
    if (seen.length) factors[key] = { ratio: clamp(Math.max(...seen)), runs: seen.length };
  }
  return { method, runs: comparable.length, factors };
}

const factor = (c: MemoryCorrection, key: CorrectionKey) => c.factors[key]?.ratio ?? 1;

/** The plain sentence: which runs, and what rose by how much (rounded up to a whole percent). */
export function correctionSentence(c: MemoryCorrection): string {
  const runs = `${c.runs} earlier ${c.method === 'qlora' ? 'QLoRA' : 'LoRA'} run${c.runs === 1 ? '' : 's'} on this machine`;
  const raised = CORRECTION_KEYS.filter((k) => factor(c, k) > 1).map((k) => `${k} +${Math.ceil((factor(c, k) - 1) * 100 - 1e-9)}%`);
  return raised.length ? `corrected by ${runs}: ${raised.join(', ')}` : `checked against ${runs}: none used more than estimated`;
}

/** `estimate` with the correction applied; the plain estimate is left as it is. */
export function applyCorrection(estimate: MemoryEstimate, correction: MemoryCorrection): CorrectedEstimate {
  const scaled = (u: Record<MemoryCategory, number>) =>
    Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, Math.ceil(u[c] * factor(correction, c))])) as Record<MemoryCategory, number>;
  const categories = scaled(estimate.categories);
  const categoryPeaks = scaled(estimate.categoryPeaks);
  const engineBytes = Math.max(
    MEMORY_CATEGORIES.reduce((s, c) => s + categories[c], 0),
    Math.ceil(estimate.engineBytes * factor(correction, 'total')),
  );
  const baseline = estimate.device.kind === 'cpu' ? factor(correction, 'process baseline') : 1;
  const overheadBytes = estimate.overheads.reduce((s, o) => s + (o.name === 'process baseline' ? Math.ceil(o.bytes * baseline) : o.bytes), 0);
  const totalBytes = engineBytes + overheadBytes;
  return {
    correction, categories, categoryPeaks, engineBytes, overheadBytes, totalBytes,
    fits: totalBytes <= estimate.usableBytes, marginBytes: estimate.usableBytes - totalBytes,
    sentence: correctionSentence(correction),
  };
}

/**
 * fitSettings under the corrected estimate (`correctionOf` gives the
 * correction of a method, null where no run is comparable). fitSettings
 * searches by the plain estimate, so it is asked again with the usable memory
 * lowered: bisection (to 1 MiB) finds the smallest lowering whose choice's
 * corrected total is within the real budget, or past which nothing fits
 * (then nothing fits corrected either: a lighter choice never needs more).
 */
export function fitWithCorrection(
  model: ModelShape, device: EstimateDevice, fixed: FixedChoices, correctionOf: (method: TrainMethod) => MemoryCorrection | null,
  safetyMargin = FIT_SAFETY_MARGIN,
): { fit: FitResult; corrected: CorrectedEstimate | null } {
  const budget = budgetOf(device, safetyMargin);
  const usable = device.availableBytes ?? device.totalBytes;
  const attempt = (lowered: number) => {
    const fit = fitSettings(model, lowered ? { ...device, availableBytes: Math.max(0, usable - lowered) } : device, fixed, safetyMargin);
    if (!fit.choices) return { fit, corrected: null, done: true };
    const correction = correctionOf(fit.choices.method);
    // Against the real device, so usable, fits and margin are this machine's.
    const plain = estimateMemory(model, fit.choices, device);
    const corrected = correction && applyCorrection(plain, correction);
    return { fit: { ...fit, estimate: plain, budgetBytes: budget }, corrected, done: !corrected || corrected.totalBytes <= budget };
  };
  const first = attempt(0);
  if (first.done) return { fit: first.fit, corrected: first.corrected };
  let lo = 0; // not enough
  let hi = usable; // enough (nothing fits with no memory at all)
  while (hi - lo > MiB) {
    const mid = Math.floor((lo + hi) / 2);
    if (attempt(mid).done) hi = mid;
    else lo = mid;
  }
  const last = attempt(hi);
  if (last.fit.found) return { fit: last.fit, corrected: last.corrected };
  const suggestions = [`No settings stay within ${device.name}'s budget once corrected by earlier runs on this machine (${first.corrected!.sentence}).`, ...first.fit.suggestions];
  return { fit: { ...first.fit, found: false, choices: null, estimate: null, changes: [], suggestions }, corrected: null };
}
