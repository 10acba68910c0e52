// Runs on the shelf: lifecycle and status rules, progress with loss points,
// the memory peak at the end and measuredPeaks, the adapter a run saved put
// on the shelf; datasets and comparisons. Real SQLite files in temp dirs.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveTrainConfig } from '../../engine/train/config.ts';
import type { TrainConfig } from '../../engine/train/types.ts';
import { LibraryError } from '../../main/library/errors.ts';
import { openLibrary, type Library } from '../../main/library/library.ts';
import type { MemoryPeak } from '../../main/library/schemas.ts';

const GOLDEN_MODEL = path.resolve('tests/golden/models/llama_gqa');

const roots: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lora-studio-runs-'));
  roots.push(dir);
  return dir;
}
after(() => {
  for (const dir of roots) rmSync(dir, { recursive: true, force: true });
});

function peak(scale: number): MemoryPeak {
  const categories = { base: 100 * scale, adapters: 10 * scale, gradients: 10 * scale, optimizer: 20 * scale, activations: 50 * scale, workspace: 5 * scale };
  return { peak_bytes: 190 * scale, categories, rss_bytes: 400 * scale };
}

describe('runs', () => {
  let lib: Library;
  let root: string;
  let config: TrainConfig;
  let baseId: number;
  let datasetId: number;

  before(async () => {
    root = tempDir();
    lib = openLibrary(path.join(root, 'app'));
    const data = path.join(root, 'train.jsonl');
    writeFileSync(data, '{"prompt":"a","completion":"b"}\n');
    baseId = (await lib.catalog.addBaseModel(GOLDEN_MODEL)).id;
    datasetId = (await lib.catalog.addDataset(data, { format: 'prompt-completion', stats: { records: 1 } })).id;
    config = resolveTrainConfig({ model: GOLDEN_MODEL, data, out: path.join(root, 'out'), method: 'qlora', rank: 4, alpha: 8, steps: 3 });
  });
  after(() => lib.close());

  it('goes queued → running → completed with progress, loss points and the memory peak', () => {
    const run = lib.runs.create({ name: 'first', config, machine: 'box A', baseModelId: baseId, datasetId, totalSteps: 3 });
    assert.equal(run.status, 'queued');
    assert.equal(run.outDir, config.out);
    assert.deepEqual(run.config, config, 'the full configuration round-trips');
    assert.equal(run.startedAt, null);

    const started = lib.runs.start(run.id);
    assert.equal(started.status, 'running');
    assert.ok(started.startedAt !== null);
    lib.runs.recordProgress(run.id, { step: 1, train: [{ step: 1, loss: 3.0, lr: 1e-4, tokensPerSecond: 50 }] });
    lib.runs.recordProgress(run.id, {
      step: 2,
      lastCheckpoint: path.join(config.out, 'checkpoints', 'step-2'),
      train: [{ step: 2, loss: 2.5, lr: 2e-4 }],
      eval: [{ step: 2, loss: 2.75 }],
    });
    lib.runs.recordProgress(run.id, { step: 3, train: [{ step: 3, loss: 2.0 }] });
    const mid = lib.runs.get(run.id);
    assert.equal(mid.step, 3);
    assert.equal(mid.totalSteps, 3);
    assert.equal(mid.lastCheckpoint, path.join(config.out, 'checkpoints', 'step-2'));

    const done = lib.runs.finishRun(run.id, { status: 'completed', memoryPeak: peak(1), trainLoss: 2.0, evalLoss: 2.5 });
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.memoryPeak, peak(1));
    assert.equal(done.evalLoss, 2.5);
    assert.ok(done.finishedAt !== null && done.finishedAt >= done.startedAt!);
    assert.equal(done.lastCheckpoint, path.join(config.out, 'checkpoints', 'step-2'), 'kept when the finish names none');
    assert.deepEqual(lib.runs.series(run.id), {
      train: [
        { step: 1, loss: 3.0, lr: 1e-4, tokensPerSecond: 50 },
        { step: 2, loss: 2.5, lr: 2e-4, tokensPerSecond: null },
        { step: 3, loss: 2.0, lr: null, tokensPerSecond: null },
      ],
      eval: [{ step: 2, loss: 2.75 }],
    });
  });

  it('refuses status changes out of order and a failure without its reason', () => {
    const run = lib.runs.create({ name: 'rules', config, machine: 'box A' });
    assert.throws(() => lib.runs.recordProgress(run.id, { step: 1 }), /queued, not running/);
    assert.throws(() => lib.runs.finishRun(run.id, { status: 'completed' }), /queued and cannot become completed \(it can become running or failed or stopped\)/);
    lib.runs.start(run.id);
    assert.throws(() => lib.runs.finishRun(run.id, { status: 'failed' }), /needs its failure reason/);
    assert.equal(lib.runs.get(run.id).status, 'running', 'a refused finish changes nothing');
    lib.runs.finishRun(run.id, { status: 'completed' });
    assert.throws(() => lib.runs.start(run.id), /completed and cannot become running\./);
    assert.throws(() => lib.runs.recordProgress(run.id, { train: [{ step: 1, loss: Number.NaN }] }), /progress is not valid: train\.0\.loss .*NaN/);
    assert.throws(() => lib.runs.create({ name: 'bad', config: { ...config, rank: 0 }, machine: 'x' }), (e: Error) => e instanceof LibraryError && /config\.rank/.test(e.message));
    assert.throws(() => lib.runs.create({ name: 'bad', config, machine: 'x', baseModelId: 999 }), /no base model 999/);
    assert.throws(() => lib.runs.get(12345), /no run 12345/);
  });

  it('fails with a reason, resumes, and replaces a repeated step of the series', () => {
    const run = lib.runs.create({ name: 'crashy', config, machine: 'box B' });
    lib.runs.start(run.id);
    lib.runs.recordProgress(run.id, { step: 2, train: [{ step: 1, loss: 3 }, { step: 2, loss: 2.9 }] });
    const failed = lib.runs.finishRun(run.id, { status: 'failed', failureReason: 'The engine process ran out of memory.' });
    assert.equal(failed.failureReason, 'The engine process ran out of memory.');
    const resumed = lib.runs.start(run.id);
    assert.equal(resumed.status, 'running');
    assert.equal(resumed.failureReason, null);
    assert.equal(resumed.finishedAt, null);
    assert.equal(resumed.startedAt, failed.startedAt, 'a resume keeps the first start time');
    lib.runs.recordProgress(run.id, { step: 2, train: [{ step: 2, loss: 2.8 }, { step: 3, loss: 2.7 }] });
    assert.deepEqual(lib.runs.series(run.id).train.map((p) => [p.step, p.loss]), [[1, 3], [2, 2.8], [3, 2.7]]);
    lib.runs.finishRun(run.id, { status: 'stopped', memoryPeak: peak(2) });
    assert.deepEqual(lib.runs.listRuns('stopped').map((r) => r.name), ['crashy']);
  });

  it('measuredPeaks lists the peaks of completed and stopped runs, by machine', () => {
    const failed = lib.runs.create({ name: 'oom', config, machine: 'box A' });
    lib.runs.start(failed.id);
    lib.runs.finishRun(failed.id, { status: 'failed', failureReason: 'out of memory', memoryPeak: peak(9) });

    const all = lib.measuredPeaks();
    assert.deepEqual(all.map((p) => [p.machine, p.status, p.peak.peak_bytes]), [['box A', 'completed', 190], ['box B', 'stopped', 380]]);
    const first = all[0]!;
    assert.deepEqual(first.config, config);
    assert.equal(first.base?.architecture, 'llama');
    assert.equal(first.base?.parameterCount, lib.catalog.getBaseModel(baseId).parameterCount);
    assert.equal(all[1]!.base, null);
    assert.deepEqual(lib.measuredPeaks('box B').map((p) => p.peak), [peak(2)]);
    assert.deepEqual(lib.measuredPeaks('nowhere'), []);
    assert.throws(() => lib.runs.finishRun(lib.runs.start(lib.runs.create({ name: 'x', config, machine: 'm' }).id).id, { status: 'completed', memoryPeak: { ...peak(1), categories: { base: 1 } } as never }), /memory peak is not valid: categories/);
  });

  it('puts the adapter a finished run saved on the shelf, linked to its run, base and dataset', async () => {
    const [first] = lib.runs.listRuns('completed').filter((r) => r.name === 'first');
    cpSync(path.join(GOLDEN_MODEL, 'adapter'), path.join(first!.outDir, 'adapter'), { recursive: true });
    const a = await lib.addAdapterFromRun(first!.id, { tags: ['trained'] });
    assert.equal(a.name, 'first');
    assert.equal(a.source, 'trained');
    assert.equal(a.runId, first!.id);
    assert.equal(a.method, 'qlora');
    assert.equal(a.datasetId, datasetId);
    assert.equal(a.evalLoss, 2.5);
    assert.equal(a.baseFingerprint, lib.catalog.getBaseModel(baseId).fingerprint);
    assert.deepEqual(lib.listAdapters({ runId: first!.id }).map((x) => x.id), [a.id]);
    assert.deepEqual(lib.adaptersForBase(a.baseFingerprint!).map((x) => x.id), [a.id]);

    const running = lib.runs.create({ name: 'busy', config, machine: 'm' });
    lib.runs.start(running.id);
    await assert.rejects(lib.addAdapterFromRun(running.id), /running; only a completed or stopped run/);
    // A stopped run without a saved adapter: the folder is named in the refusal.
    const stopped = lib.runs.listRuns('stopped')[0]!;
    await assert.rejects(lib.addAdapterFromRun(stopped.id, { folder: path.join(root, 'nothing-here') }), /adapter_config\.json/);
  });
});

describe('datasets and comparisons', () => {
  it('records a dataset by path and content; an edited file is a new entry', async () => {
    const root = tempDir();
    const lib = openLibrary(path.join(root, 'app'));
    try {
      const file = path.join(root, 'data.jsonl');
      writeFileSync(file, '{"text":"one"}\n');
      const d1 = await lib.catalog.addDataset(file, { format: 'text', stats: { records: 1, tokens: { total: 5, trained: 5 } } });
      assert.equal(d1.contentHash.length, 64);
      assert.equal(d1.sizeBytes, 15);
      assert.deepEqual(d1.stats, { records: 1, tokens: { total: 5, trained: 5 } });
      const same = await lib.catalog.addDataset(file, { format: 'text', stats: { records: 1, examples: 1 } });
      assert.equal(same.id, d1.id, 'same file, same entry (stats updated)');
      assert.deepEqual(same.stats, { records: 1, examples: 1 });
      writeFileSync(file, '{"text":"one"}\n{"text":"two"}\n');
      const d2 = await lib.catalog.addDataset(file, { format: 'text' });
      assert.notEqual(d2.id, d1.id);
      assert.notEqual(d2.contentHash, d1.contentHash);
      assert.deepEqual(lib.catalog.listDatasets().map((d) => d.id), [d2.id, d1.id]);
      assert.deepEqual(lib.catalog.setDatasetStats(d2.id, { records: 2 }).stats, { records: 2 });
      await assert.rejects(lib.catalog.addDataset(file, { format: 'parquet' }), /dataset format is not valid/);
      await assert.rejects(lib.catalog.addDataset(file, { stats: { records: -1 } }), /dataset stats is not valid: records/);
      await assert.rejects(lib.catalog.addDataset(path.join(root, 'missing.jsonl')), /Cannot read the dataset .*missing\.jsonl/);
    } finally {
      lib.close();
    }
  });

  it('saves a comparison, rates its prompts, and lists it by adapter', async () => {
    const lib = openLibrary(tempDir());
    try {
      const src = path.join(tempDir(), 'adapter');
      cpSync(path.join(GOLDEN_MODEL, 'adapter'), src, { recursive: true });
      const a = await lib.importAdapter(src);
      const c = lib.comparisons.save({
        title: 'greetings',
        adapterId: a.id,
        settings: { temperature: 0.7, topP: 0.9, seed: 1 },
        entries: [
          { prompt: 'Hi', base: 'Hello.', adapted: 'Hi there!' },
          { prompt: 'Bye', base: 'Goodbye.', adapted: 'See you!', rating: 'tie' },
        ],
      });
      assert.deepEqual(c.entries.map((e) => e.rating), [null, 'tie']);
      assert.deepEqual(lib.comparisons.rate(c.id, 0, 'adapted').entries.map((e) => e.rating), ['adapted', 'tie']);
      assert.deepEqual(lib.comparisons.rate(c.id, 1, null).entries.map((e) => e.rating), ['adapted', null]);
      assert.deepEqual(lib.comparisons.get(c.id).settings, { temperature: 0.7, topP: 0.9, seed: 1 });
      assert.deepEqual(lib.comparisons.listComparisons(a.id).map((x) => x.id), [c.id]);
      assert.deepEqual(lib.comparisons.listComparisons('0000000000000000'), []);
      assert.throws(() => lib.comparisons.rate(c.id, 2, 'base'), /prompts 0-1; there is no prompt 2/);
      assert.throws(() => lib.comparisons.rate(c.id, 0, 'better' as never), /rating is not valid/);
      assert.throws(() => lib.comparisons.save({ entries: [] }), /needs at least one prompt/);
      assert.throws(() => lib.comparisons.save({ adapterId: 'ffffffffffffffff', entries: [{ prompt: 'p', base: 'a', adapted: 'b' }] }), /no adapter/);
    } finally {
      lib.close();
    }
  });
});
