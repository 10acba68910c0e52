// The estimate corrected by measured runs: run records made the way the jobs
// layer makes them (a library's runs table: create, start, finishRun with the
// engine's memory report, read back by measuredPeaks), synthetic peaks above
// and below the estimate, a real tiny training run, and the API handlers.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  applyCorrection, CORRECTION_MAX, correctionFor, fitWithCorrection, measuredRatios, type MeasuredRun,
} from '../../engine/estimate/correction.ts';
import { cpuDevice } from '../../engine/estimate/device.ts';
import { estimateMemory, type MemoryEstimate, type RunChoices } from '../../engine/estimate/estimate.ts';
import { resolveModelShape, type ModelShape } from '../../engine/estimate/model-source.ts';
import { MEMORY_CATEGORIES, loadNative, type MemoryCategory } from '../../engine/native/binding.ts';
import { resolveTrainConfig } from '../../engine/train/config.ts';
import { runTraining } from '../../engine/train/run.ts';
import type { MemoryReport, TrainConfig } from '../../engine/train/types.ts';
import { engineHandlers } from '../../main/api/handlers/engine.ts';
import { openLibrary, type Library } from '../../main/library/library.ts';
import { tempDir } from './helpers/engine-fixtures.ts';
import { eventLog, fixtureConfig, trainFixture, type TrainFixture } from './helpers/train-fixtures.ts';

const MACHINE = 'cpu test machine';
const CHOICES: RunChoices = { method: 'lora', rank: 4, targets: ['q_proj', 'v_proj'], seqLen: 96, batch: 2, checkpointing: true };

let f: TrainFixture;
let shape: ModelShape;
let library: Library;
let plain: MemoryEstimate; // the estimate of CHOICES on this machine's CPU

before(async () => {
  f = await trainFixture(16);
  shape = await resolveModelShape(f.model);
  plain = estimateMemory(shape, CHOICES, cpuDevice());
});

async function freshLibrary(): Promise<Library> {
  library?.close();
  library = openLibrary(await tempDir('lora-studio-correction-'));
  return library;
}
after(() => library?.close());

function configOf(c: RunChoices, over: Partial<TrainConfig> = {}): TrainConfig {
  return resolveTrainConfig({
    model: f.model, data: f.data, out: path.join(f.dir, 'out'),
    method: c.method, rank: c.rank, targets: [...c.targets], seqLen: c.seqLen, batchSize: c.batch, gradientCheckpointing: c.checkpointing, ...over,
  });
}

/** A finished run on the shelf, as the job layer records one; returns what measuredPeaks reads back. */
function recordRun(lib: Library, config: TrainConfig, memory: MemoryReport): void {
  const run = lib.runs.create({ name: 'run', config, machine: MACHINE, totalSteps: 2 });
  lib.runs.start(run.id);
  lib.runs.finishRun(run.id, { status: 'completed', memoryPeak: memory, trainLoss: 1 });
}

/** The engine's report for `est` with each category's peak × scale[category] (default 1). */
function measuredAs(est: MemoryEstimate, scale: Partial<Record<MemoryCategory, number>>, rssExtra = 0): MemoryReport {
  const categories = Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, Math.round(est.categoryPeaks[c] * (scale[c] ?? 1))])) as Record<MemoryCategory, number>;
  const peak = Math.round(est.engineBytes * Math.max(1, ...Object.values(scale)));
  return { peak_bytes: peak, categories, rss_bytes: peak + rssExtra };
}

async function correctedFrom(lib: Library, method: RunChoices['method'] = 'lora') {
  const ratios = await measuredRatios(lib.runs.measuredPeaks(MACHINE), cpuDevice());
  const correction = correctionFor(ratios, method);
  return { ratios, correction, corrected: correction && applyCorrection(plain, correction) };
}

describe('memory correction from measured runs', () => {
  it('a run that allocated more activations than estimated raises them by that ratio', async () => {
    const lib = await freshLibrary();
    const other: RunChoices = { ...CHOICES, seqLen: 64, rank: 8 }; // a different run of the same method
    const otherEst = estimateMemory(shape, other, cpuDevice());
    recordRun(lib, configOf(other), measuredAs(otherEst, { activations: 1.25 }));
    const { correction, corrected } = await correctedFrom(lib);
    assert.ok(correction && corrected);
    assert.equal(correction.runs, 1);
    assert.ok(Math.abs(correction.factors.activations!.ratio - 1.25) < 1e-6, `ratio ${correction.factors.activations!.ratio}`);
    assert.equal(corrected.categories.activations, Math.ceil(plain.categories.activations * correction.factors.activations!.ratio));
    assert.equal(corrected.categories.base, plain.categories.base);
    assert.ok(corrected.totalBytes > plain.totalBytes, 'the corrected total rises');
    assert.ok(corrected.engineBytes >= Math.ceil(plain.engineBytes * correction.factors.total!.ratio));
    assert.equal(corrected.totalBytes, corrected.engineBytes + corrected.overheadBytes);
    assert.match(corrected.sentence, /^corrected by 1 earlier LoRA run on this machine: .*activations \+25%/);
  });

  it('smaller measurements never lower the estimate; the largest ratio wins and is clamped to 2', async () => {
    const lib = await freshLibrary();
    recordRun(lib, configOf(CHOICES), measuredAs(plain, { activations: 0.5, workspace: 0.3, base: 0.9 }));
    let { corrected, correction } = await correctedFrom(lib);
    assert.ok(corrected && correction);
    assert.deepEqual(corrected.categories, plain.categories);
    assert.equal(corrected.totalBytes, plain.totalBytes);
    assert.ok(MEMORY_CATEGORIES.every((c) => correction!.factors[c]!.ratio === 1));
    assert.match(corrected.sentence, /^checked against 1 earlier LoRA run on this machine: none used more/);

    recordRun(lib, configOf(CHOICES), measuredAs(plain, { workspace: 1.1 }));
    recordRun(lib, configOf(CHOICES), measuredAs(plain, { workspace: 1.4, optimizer: 3 }));
    ({ corrected, correction } = await correctedFrom(lib));
    assert.ok(corrected && correction);
    assert.equal(correction.runs, 3);
    assert.equal(correction.factors.workspace!.runs, 3);
    assert.ok(Math.abs(correction.factors.workspace!.ratio - 1.4) < 1e-6);
    assert.equal(correction.factors.optimizer!.ratio, CORRECTION_MAX);
    assert.equal(corrected.categories.optimizer, 2 * plain.categories.optimizer);
    assert.match(corrected.sentence, /corrected by 3 earlier LoRA runs on this machine: .*optimizer \+100%.*workspace \+40%/);
  });

  it('the process baseline: RSS beyond the engine over the assumed baseline raises the CPU overhead', async () => {
    const lib = await freshLibrary();
    const baseline = plain.overheads.find((o) => o.name === 'process baseline')!.bytes;
    recordRun(lib, configOf(CHOICES), measuredAs(plain, {}, Math.round(baseline * 1.5)));
    const { corrected, correction } = await correctedFrom(lib);
    assert.ok(corrected && correction);
    assert.ok(Math.abs(correction.factors['process baseline']!.ratio - 1.5) < 1e-6);
    assert.equal(corrected.overheadBytes, Math.ceil(baseline * correction.factors['process baseline']!.ratio));
    assert.equal(corrected.engineBytes, plain.engineBytes);
    assert.match(corrected.sentence, /process baseline \+50%/);
  });

  it('runs of another method and runs whose model is gone are left out', async () => {
    const lib = await freshLibrary();
    const qlora: RunChoices = { ...CHOICES, method: 'qlora' };
    recordRun(lib, configOf(qlora), measuredAs(estimateMemory(shape, qlora, cpuDevice()), { activations: 1.5 }));
    const gone = path.join(f.dir, 'gone-model');
    recordRun(lib, configOf(CHOICES, { model: gone }), measuredAs(plain, { activations: 1.8 }));
    assert.equal(lib.runs.measuredPeaks(MACHINE).length, 2);
    const { ratios, correction } = await correctedFrom(lib, 'lora');
    assert.equal(ratios.length, 1, 'the run without its model folder has no estimate');
    assert.equal(correction, null, 'no LoRA run to learn from');
    const q = correctionFor(ratios, 'qlora');
    assert.ok(q && Math.abs(q.factors.activations!.ratio - 1.5) < 1e-6);
  });

  it('fit under the correction picks settings whose corrected total stays within the budget', async () => {
    const lib = await freshLibrary();
    recordRun(lib, configOf(CHOICES), measuredAs(plain, { activations: 2, workspace: 2 }));
    const ratios = await measuredRatios(lib.runs.measuredPeaks(MACHINE), cpuDevice());
    // A device just big enough for the plain choice of a fit at seq-len 256.
    const probe = estimateMemory(shape, { ...CHOICES, seqLen: 256, batch: 16, rank: 64 }, cpuDevice());
    const device = { ...cpuDevice(), availableBytes: Math.ceil(probe.totalBytes / 0.9) + 1 };
    const fixed = { method: 'lora' as const, seqLen: 256, checkpointing: true, targets: CHOICES.targets };
    const { fit, corrected } = fitWithCorrection(shape, device, fixed, (m) => correctionFor(ratios, m));
    assert.ok(fit.found && fit.choices && corrected);
    assert.ok(corrected.totalBytes <= fit.budgetBytes, `${corrected.totalBytes} within ${fit.budgetBytes}`);
    assert.ok(fit.choices.batch < 16 || fit.choices.rank < 64, 'the corrected fit is lighter than the plain one');
  });

  it('a real tiny run: the engine categories match the estimate, so the correction is exactly 1', async () => {
    const native = loadNative();
    const threads = native.cpuInfo().threads;
    native.setThreads(1); // the estimate equals the allocator to the byte with one thread
    try {
      const lib = await freshLibrary();
      const config = fixtureConfig(f, 'real', { steps: 2, saveEvery: 0, evalSplit: 0, samplePrompts: [], rank: 4, targets: ['q_proj', 'v_proj'], seqLen: 96, batchSize: 2, batching: 'packed' });
      const log = eventLog();
      await runTraining(config, { onEvent: log.onEvent });
      const done = log.of('done')[0]!;
      recordRun(lib, config, done.memory);
      const [ratios] = await measuredRatios(lib.runs.measuredPeaks(MACHINE), { ...cpuDevice(), threads: 1 });
      assert.ok(ratios);
      for (const c of MEMORY_CATEGORIES) if (ratios.ratios[c] !== undefined) assert.equal(ratios.ratios[c], 1, `${c}: measured / estimated`);
      assert.equal(ratios.ratios.total, 1, 'engine total');
      const correction = correctionFor([ratios], 'lora')!;
      for (const c of MEMORY_CATEGORIES) assert.equal(correction.factors[c]?.ratio ?? 1, 1, c);
    } finally {
      native.setThreads(threads);
    }
  });

  it('the API corrects estimates of this machine, not of a catalogue card', async () => {
    const lib = await freshLibrary();
    recordRun(lib, configOf(CHOICES), measuredAs(plain, { activations: 1.3 }));
    const api = engineHandlers({ measuredRuns: () => lib.runs.measuredPeaks(MACHINE) });
    const here = await api['estimate.estimate']({ model: f.model, device: 'cpu', choices: { ...CHOICES, targets: [...CHOICES.targets] } });
    assert.ok(here.correction);
    assert.equal(here.totalBytes, plain.totalBytes);
    assert.ok(here.correction.totalBytes > here.totalBytes);
    assert.match(here.correction.sentence, /activations \+30%/);
    const card = await api['estimate.estimate']({ model: f.model, device: '4090', choices: { ...CHOICES, targets: [...CHOICES.targets] } });
    assert.equal(card.correction, undefined);
    const fit = await api['estimate.fit']({ model: f.model, device: 'cpu', fixed: { method: 'lora' } });
    assert.ok(fit.estimate?.correction && fit.estimate.correction.totalBytes <= fit.budgetBytes);
    const none = await engineHandlers()['estimate.estimate']({ model: f.model, choices: { ...CHOICES, targets: [...CHOICES.targets] } });
    assert.equal(none.correction, undefined);
  });

  after(async () => {
    if (f) await rm(f.dir, { recursive: true, force: true });
  });
});
