// Learning-rate schedules, as transformers defines them
// (get_constant_schedule_with_warmup, get_linear_schedule_with_warmup,
// get_cosine_schedule_with_warmup with num_cycles 0.5), so a run here and a
// run with the Hugging Face Trainer use the same rate at every step.
//
// transformers' LambdaLR is stepped once after every optimizer step, so
// optimizer step k (1-based) uses the multiplier of scheduler step s = k - 1:
//
//   warmup   s < W:  s / W                       (step 1 trains at lr 0 when W > 0)
//   constant         1
//   linear           max(0, (T - s) / max(1, T - W))
//   cosine           p = (s - W) / max(1, T - W);  max(0, 0.5 · (1 + cos(π · p)))
//
// W = warmupSteps, T = totalSteps. The last step (s = T - 1) trains at lr/(T - W)
// (linear), not at 0: the rate reaches 0 only after the last update.
import type { Schedule } from './types.ts';

export interface ScheduleSpec {
  schedule: Schedule;
  /** Peak learning rate. */
  lr: number;
  warmupSteps: number;
  totalSteps: number;
}

/** Multiplier of the peak rate for optimizer step `step` (1-based). */
export function lrMultiplier(spec: Omit<ScheduleSpec, 'lr'>, step: number): number {
  if (!Number.isInteger(step) || step < 1) throw new RangeError(`optimizer steps count from 1, got ${step}`);
  const s = step - 1;
  const W = spec.warmupSteps;
  const T = spec.totalSteps;
  if (s < W) return s / Math.max(1, W);
  switch (spec.schedule) {
    case 'constant':
      return 1;
    case 'linear':
      return Math.max(0, (T - s) / Math.max(1, T - W));
    case 'cosine': {
      const progress = (s - W) / Math.max(1, T - W);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
    }
  }
}

/** Learning rate of optimizer step `step` (1-based). */
export function learningRate(spec: ScheduleSpec, step: number): number {
  return spec.lr * lrMultiplier(spec, step);
}
