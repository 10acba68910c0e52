// The training run: data in, adapter out.
//
//   runTraining(config)      a fresh run into config.out
//   resumeTraining(dir)      continues from a checkpoint (or the newest whole
//                            checkpoint of an out folder), exactly: the steps
//                            after the resume have the losses the uninterrupted
//                            run has, bit for bit (same machine, same threads)
//
// One optimizer step, for step s (1-based):
//   1. take gradAccum micro-batches from the stream (batches.ts); T = their
//      trained tokens in all (the step's micro-batches are all built first)
//   2. trainStep each with gradScale 1/T and dropout seed (seed, s, m): the
//      accumulated gradient is that of the token-weighted mean loss
//   3. optimizerStep (AdamW, global-norm clipping) at the schedule's lr(s)
//   4. 'step' event; eval every evalEvery steps; checkpoint every saveEvery
// then, at the end: a last eval and checkpoint, out/adapter, out/run.json and
// 'done'. Everything a step depends on is a function of the seed, the step
// number and the data position, which checkpoints store.
//
// Stopping: an aborted signal cancels the running engine call (CancelledError);
// the half-done step's gradients are dropped, a checkpoint of the last finished
// optimizer step is written, 'done' says 'stopped' and the promise resolves.
// The optimizer step itself is not cancelled, so it is never half applied.
// Errors reject the promise (UserError and its kinds for bad input); the
// caller reports them ('error' events are the caller's to emit).
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { CancelledError, EngineModel, memoryStats, resetMemoryPeaks } from '../api.ts';
import { loadPeftAdapter } from '../adapters/peft.ts';
import type { TrainingData } from '../data/pipeline.ts';
import { generateAll } from '../generate/generate.ts';
import { writeFileAtomic } from '../model/atomic.ts';
import { UserError } from '../model/errors.ts';
import { planData, totalStepsForEpochs, MicroBatchStream, type DataPlan, type MicroBatch } from './batches.ts';
import {
  ADAPTER_NAME,
  CheckpointError,
  findCheckpoint,
  listCheckpoints,
  loadOptimizerState,
  pruneCheckpoints,
  removeLeftovers,
  STATE_FILE,
  writeCheckpoint,
  writeFinalAdapter,
  type TrainerState,
} from './checkpoint.ts';
import { resolveTrainConfig, TrainConfigError, TRAIN_FLAGS } from './config.ts';
import { evalResultOf, evaluateExamples } from './evaluate.ts';
import { dropoutSeed, shuffleState } from './rng.ts';
import { learningRate } from './schedule.ts';
import type { MemoryReport, RunOptions, TrainConfig, TrainEvent, TrainResult } from './types.ts';

/** Settings a resumed run may change: they do not change the steps already planned. */
export const RESUME_OVERRIDABLE: readonly (keyof TrainConfig)[] = ['steps', 'epochs', 'saveEvery', 'evalEvery', 'keepCheckpoints', 'samplePrompts', 'sampleMaxTokens'];

/** Trains a fresh adapter (or config.initAdapter) on config.data into config.out. */
export async function runTraining(config: TrainConfig, opts: RunOptions = {}): Promise<TrainResult> {
  const c = resolveTrainConfig(config);
  const existing = await listCheckpoints(path.join(c.out, 'checkpoints'));
  if (existing.length > 0)
    throw new UserError(
      `${c.out} already holds checkpoints of a run (${path.basename(existing[0]!.dir)}); resume that run, or choose another output folder (${TRAIN_FLAGS.out})`,
    );
  return train(c, opts, null);
}

/** Continues a run from a checkpoint folder, or from the newest whole checkpoint of an out folder. */
export async function resumeTraining(checkpointOrOutDir: string, opts: RunOptions & { overrides?: Partial<TrainConfig> } = {}): Promise<TrainResult> {
  const { dir, state } = await findCheckpoint(checkpointOrOutDir);
  let stored: TrainConfig;
  try {
    stored = resolveTrainConfig(state.config);
  } catch (e) {
    throw new CheckpointError(`${path.join(dir, STATE_FILE)}: its config is not valid (${(e as Error).message})`, path.join(dir, STATE_FILE));
  }
  const config = applyOverrides(stored, opts.overrides ?? {});
  return train(config, opts, { dir, state });
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The stored config with the allowed overrides; any other differing setting is refused, naming it. */
function applyOverrides(stored: TrainConfig, overrides: Partial<TrainConfig>): TrainConfig {
  const next: Record<string, unknown> = { ...stored };
  for (const [k, v] of Object.entries(overrides) as [keyof TrainConfig, unknown][]) {
    if (v === undefined) continue;
    if (!(k in stored)) throw new TrainConfigError(k, `unknown training setting '${k}'`);
    const given = ['model', 'data', 'out', 'initAdapter', 'evalData'].includes(k) && typeof v === 'string' ? path.resolve(v) : v;
    if (sameValue(given, stored[k])) continue;
    if (!RESUME_OVERRIDABLE.includes(k))
      throw new TrainConfigError(
        k,
        `${TRAIN_FLAGS[k] ?? k} differs from the checkpoint (${JSON.stringify(stored[k])} there, ${JSON.stringify(given)} given); ` +
          `a resumed run keeps the settings its steps were made with (only ${RESUME_OVERRIDABLE.map((f) => TRAIN_FLAGS[f]).join(', ')} can change). ` +
          'Start a new run to change it.',
      );
    next[k] = given;
  }
  // Extending by steps replaces a length in epochs, and the other way round.
  if (overrides.steps !== undefined && overrides.steps !== null && !sameValue(overrides.steps, stored.steps)) next.epochs = null;
  if (overrides.epochs !== undefined && overrides.epochs !== null && !sameValue(overrides.epochs, stored.epochs)) next.steps = null;
  return resolveTrainConfig(next as unknown as TrainConfig);
}

function memoryReport(): MemoryReport {
  const s = memoryStats();
  return { peak_bytes: s.totalPeak, categories: { ...s.peak }, rss_bytes: process.memoryUsage().rss };
}

async function* examplesAt(data: TrainingData, indices: Int32Array) {
  for (const i of indices) yield await data.exampleAt(i);
}

interface Resume {
  dir: string;
  state: TrainerState;
}

async function train(config: TrainConfig, opts: RunOptions, resume: Resume | null): Promise<TrainResult> {
  const started = performance.now();
  const emit = (e: TrainEvent) => opts.onEvent?.(e);
  const signal = opts.signal;
  const checkpointsDir = path.join(config.out, 'checkpoints');
  await mkdir(config.out, { recursive: true });
  await removeLeftovers(checkpointsDir, 'step');
  await removeLeftovers(config.out, 'adapter');

  const st = resume?.state;
  const stoppedBeforeStart = (): TrainResult => {
    const checkpointPath = resume?.dir ?? '';
    const losses = st ? [...st.losses] : [];
    const evalLosses = st ? [...st.eval_history] : [];
    emit({
      type: 'done', reason: 'stopped', step: st?.step ?? 0, adapter_path: '', checkpoint_path: checkpointPath, train_loss: losses.at(-1) ?? null,
      eval_loss: evalLosses.at(-1)?.loss ?? null, elapsed_seconds: (st?.elapsed_seconds ?? 0) + (performance.now() - started) / 1000, memory: memoryReport(),
    });
    return { reason: 'stopped', steps: st?.step ?? 0, adapterPath: '', checkpointPath, losses, evalLosses };
  };

  let plan: DataPlan;
  let model: EngineModel;
  try {
    plan = await planData(config, signal);
    model = await EngineModel.load(config.model, { method: config.method, signal });
  } catch (e) {
    if (e instanceof CancelledError) return stoppedBeforeStart();
    throw e;
  }
  const totalSteps = config.steps ?? totalStepsForEpochs(plan, config);
  if (st) {
    try {
      checkResumable(config, plan, totalSteps, resume!);
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  // Run state; a checkpoint stores all of it.
  let step = st?.step ?? 0;
  let epoch = st?.epoch ?? 0;
  let position = st?.position ?? 0;
  const losses: number[] = st ? [...st.losses] : [];
  const evalHistory: { step: number; loss: number }[] = st ? [...st.eval_history] : [];
  let bestEval: number | null = st?.best_eval_loss ?? null;
  let evalsSinceBest = st?.evals_since_best ?? 0;
  const priorElapsed = st?.elapsed_seconds ?? 0;
  const elapsed = () => priorElapsed + (performance.now() - started) / 1000;

  try {
    if (resume) {
      await loadPeftAdapter(model, resume.dir, ADAPTER_NAME);
      await loadOptimizerState(model, resume.dir);
    } else if (config.initAdapter) {
      await loadPeftAdapter(model, config.initAdapter, ADAPTER_NAME);
    } else {
      model.addAdapter(ADAPTER_NAME, { rank: config.rank, alpha: config.alpha, dropout: config.dropout, rslora: config.rslora, targets: config.targets, seed: config.seed });
    }
    resetMemoryPeaks();
    const examplesPerEpoch = plan.trainIndices.length;
    emit({
      type: 'start',
      time: new Date().toISOString(),
      config,
      total_steps: totalSteps,
      train_examples: examplesPerEpoch,
      eval_examples: plan.evalIndices.length,
      truncated: plan.stats.truncated,
      dropped: plan.stats.dropped,
      no_trained_tokens: plan.stats.noTrainedTokens,
      skipped_bad_records: plan.stats.skippedBadRecords,
      resumed_from_step: st ? st.step : null,
    });

    const tokenizer = plan.train.tokenizer;
    let lastEvalStep = -1;
    /** Evaluates; returns true when patience has run out. */
    const evaluate = async (): Promise<boolean> => {
      const totals = await evaluateExamples(model, examplesAt(plan.evalData!, plan.evalIndices), { batchSize: config.batchSize, padId: tokenizer.padTokenId, signal });
      const r = evalResultOf(totals);
      const best = bestEval === null || r.loss < bestEval;
      if (best) {
        bestEval = r.loss;
        evalsSinceBest = 0;
      } else evalsSinceBest++;
      evalHistory.push({ step, loss: r.loss });
      lastEvalStep = step;
      emit({ type: 'eval', step, eval_loss: r.loss, perplexity: r.perplexity, tokens: r.tokens, best });
      return config.earlyStoppingPatience > 0 && evalsSinceBest >= config.earlyStoppingPatience;
    };

    let lastCheckpoint: { step: number; dir: string } | null = resume ? { step: resume.state.step, dir: resume.dir } : null;
    const checkpoint = async (withSamples: boolean) => {
      if (lastCheckpoint?.step === step) return;
      const dir = await writeCheckpoint(model, checkpointsDir, {
        step,
        total_steps: totalSteps,
        epoch,
        position,
        rng: { seed: config.seed, shuffle_state: shuffleState(config.seed, epoch), next_dropout_seed: dropoutSeed(config.seed, step + 1, 0) },
        losses,
        eval_history: evalHistory,
        best_eval_loss: bestEval,
        evals_since_best: evalsSinceBest,
        elapsed_seconds: elapsed(),
        train_examples: examplesPerEpoch,
        eval_examples: plan.evalIndices.length,
        config,
      });
      lastCheckpoint = { step, dir };
      emit({ type: 'checkpoint', step, path: dir });
      await pruneCheckpoints(checkpointsDir, config.keepCheckpoints);
      if (withSamples) await sample();
    };
    const sample = async () => {
      for (const prompt of config.samplePrompts) {
        const ids = tokenizer.encodeChatPrompt([{ role: 'user', content: prompt }]);
        const r = await generateAll(model, ids, { greedy: true, maxTokens: config.sampleMaxTokens, decode: (ids) => tokenizer.decode(ids), signal });
        if (r.finishReason === 'cancelled') return;
        emit({ type: 'sample', step, prompt, output: r.text ?? '' });
      }
    };

    const stream = new MicroBatchStream(plan, config, epoch, position, config.steps === null ? config.epochs : null);
    const loopStart = performance.now();
    const stepsAtStart = step;
    let reason: TrainResult['reason'] = 'completed';
    try {
      while (step < totalSteps) {
        if (signal?.aborted) throw new CancelledError('the training run');
        const stepStart = performance.now();
        const micro: MicroBatch[] = [];
        while (micro.length < config.gradAccum) {
          const m = await stream.next();
          if (!m) break;
          micro.push(m);
        }
        if (micro.length === 0) break;
        const tokens = micro.reduce((n, m) => n + m.trainedTokens, 0);
        const s = step + 1;
        let lossSum = 0;
        try {
          for (const [i, m] of micro.entries()) {
            const r = await model.trainStep(
              { ...m.batch, gradScale: 1 / tokens, dropoutSeed: dropoutSeed(config.seed, s, i) },
              { checkpointing: config.gradientCheckpointing, signal },
            );
            lossSum += r.lossSum;
          }
        } catch (e) {
          model.zeroGrad(); // the unfinished step's gradients
          throw e;
        }
        const lr = learningRate({ schedule: config.schedule, lr: config.lr, warmupSteps: config.warmupSteps, totalSteps }, s);
        const { gradNorm } = await model.optimizerStep({
          lr, beta1: config.adamBeta1, beta2: config.adamBeta2, eps: config.adamEps, weightDecay: config.weightDecay, maxGradNorm: config.maxGradNorm,
        });
        step = s;
        epoch = micro.at(-1)!.epoch;
        position = micro.at(-1)!.position;
        const loss = lossSum / tokens;
        losses.push(loss);
        const now = performance.now();
        const perStep = (now - loopStart) / 1000 / (step - stepsAtStart);
        emit({
          type: 'step',
          step,
          total_steps: totalSteps,
          epoch: epoch + position / examplesPerEpoch,
          loss,
          lr,
          grad_norm: gradNorm,
          trained_tokens: tokens,
          tokens_per_second: tokens / Math.max(1e-9, (now - stepStart) / 1000),
          elapsed_seconds: elapsed(),
          eta_seconds: perStep * (totalSteps - step),
          memory: memoryReport(),
        });
        let stopEarly = false;
        if (config.evalEvery > 0 && step % config.evalEvery === 0 && plan.evalData) stopEarly = await evaluate();
        if (config.saveEvery > 0 && step % config.saveEvery === 0) await checkpoint(true);
        if (stopEarly) {
          reason = 'early-stopped';
          break;
        }
      }
      if (reason === 'completed' && plan.evalData && lastEvalStep !== step) await evaluate();
      await checkpoint(true);
    } catch (e) {
      if (!(e instanceof CancelledError)) throw e;
      reason = 'stopped';
      await checkpoint(false);
    }

    const adapterPath = await writeFinalAdapter(model, config.out, config.model);
    const checkpointPath = lastCheckpoint!.dir;
    const trainLoss = losses.at(-1) ?? null;
    const evalLoss = evalHistory.at(-1)?.loss ?? null;
    await writeFileAtomic(path.join(config.out, 'run.json'), [
      Buffer.from(
        JSON.stringify(
          {
            reason, steps: step, total_steps: totalSteps, train_loss: trainLoss, eval_loss: evalLoss, best_eval_loss: bestEval,
            adapter_path: adapterPath, checkpoint_path: checkpointPath, elapsed_seconds: elapsed(), finished: new Date().toISOString(),
            resumed_from_step: st ? st.step : null, train_examples: examplesPerEpoch, eval_examples: plan.evalIndices.length,
            losses, eval_losses: evalHistory, config,
          },
          null,
          1,
        ) + '\n',
      ),
    ]);
    emit({
      type: 'done', reason, step, adapter_path: adapterPath, checkpoint_path: checkpointPath,
      train_loss: trainLoss, eval_loss: evalLoss, elapsed_seconds: elapsed(), memory: memoryReport(),
    });
    return { reason, steps: step, adapterPath, checkpointPath, losses, evalLosses: evalHistory };
  } finally {
    model.dispose();
  }
}

/** Refuses a resume whose data or length no longer match the checkpoint. */
function checkResumable(config: TrainConfig, plan: DataPlan, totalSteps: number, resume: Resume): void {
  const st = resume.state;
  const stateFile = path.join(resume.dir, STATE_FILE);
  if (st.train_examples !== plan.trainIndices.length || st.eval_examples !== plan.evalIndices.length)
    throw new CheckpointError(
      `${config.data} has changed since ${stateFile} was written (${plan.trainIndices.length} training / ${plan.evalIndices.length} evaluation examples now, ` +
        `${st.train_examples} / ${st.eval_examples} then); resume with the same data, or start a new run`,
      stateFile,
    );
  const lengthChanged = !sameValue(config.steps, st.config.steps) || !sameValue(config.epochs, st.config.epochs);
  if (!lengthChanged && st.total_steps !== totalSteps)
    throw new CheckpointError(`${config.data} has changed since ${stateFile} was written (${totalSteps} steps now, ${st.total_steps} then); resume with the same data`, stateFile);
  if (st.rng.seed !== config.seed || st.rng.shuffle_state !== shuffleState(config.seed, st.epoch))
    throw new CheckpointError(`${stateFile}: the RNG state does not match the seed; the checkpoint is damaged`, stateFile);
}
