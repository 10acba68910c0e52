import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EngineModel } from '../../engine/api.ts';
import { IGNORE } from '../../engine/data/masks.ts';
import { batchTrainedTokens, packedBatch, packExamples, paddedBatch, paddingFreeBatch, Packer } from '../../engine/data/packing.ts';
import { TrainingData } from '../../engine/data/pipeline.ts';
import { createTinyModel } from '../../engine/model/tiny.ts';
import { withTempDir } from './helpers/model-fixtures.ts';

const FIXTURES = path.join(import.meta.dirname, 'fixtures', 'data');

const ex = (ids: number[], labels = ids) => ({ inputIds: ids, labels });

describe('packing and batching', () => {
  it('packs greedily in order; positions restart, segments count, first labels are -100', () => {
    const rows = packExamples([ex([1, 2, 3]), ex([4, 5], [-100, 5]), ex([6, 7, 8, 9]), ex([10])], 6, 0);
    assert.equal(rows.length, 2);
    const [a, b] = rows;
    assert.deepEqual([...a!.inputIds], [1, 2, 3, 4, 5, 0]);
    assert.deepEqual([...a!.labels], [IGNORE, 2, 3, IGNORE, 5, IGNORE]);
    assert.deepEqual([...a!.positions], [0, 1, 2, 0, 1, 0]);
    assert.deepEqual([...a!.segments], [0, 0, 0, 1, 1, 2]);
    assert.equal(a!.examples, 2);
    assert.equal(a!.tokens, 5);
    assert.deepEqual([...b!.inputIds], [6, 7, 8, 9, 10, 0]);
    assert.deepEqual([...b!.labels], [IGNORE, 7, 8, 9, IGNORE, IGNORE]);
    assert.deepEqual([...b!.positions], [0, 1, 2, 3, 0, 0]);
    assert.deepEqual([...b!.segments], [0, 0, 0, 0, 1, 2]);
    const batch = packedBatch(rows);
    assert.equal(batch.batch, 2);
    assert.equal(batch.seq, 6);
    assert.deepEqual([...(batch.segments as Int32Array)].slice(6), [0, 0, 0, 0, 1, 2]);
    assert.equal(batchTrainedTokens(batch), 6);
    assert.throws(() => new Packer(4, 0).add(ex([1, 2, 3, 4, 5])), /does not fit/);
  });

  it('padding-free batches concatenate without padding', () => {
    const b = paddingFreeBatch([ex([1, 2, 3]), ex([4, 5])]);
    assert.equal(b.batch, 1);
    assert.equal(b.seq, 5);
    assert.deepEqual([...b.inputIds], [1, 2, 3, 4, 5]);
    assert.deepEqual([...b.labels], [IGNORE, 2, 3, IGNORE, 5]);
    assert.deepEqual([...(b.positions as Int32Array)], [0, 1, 2, 0, 1]);
    assert.deepEqual([...(b.segments as Int32Array)], [0, 0, 0, 1, 1]);
  });

  it('padded batches pad with the pad id and label pads -100', () => {
    const b = paddedBatch([ex([1, 2, 3]), ex([4], [-100])], 9);
    assert.equal(b.seq, 3);
    assert.deepEqual([...b.inputIds], [1, 2, 3, 4, 9, 9]);
    assert.deepEqual([...b.labels], [1, 2, 3, -100, -100, -100]);
    assert.equal(paddedBatch([ex([1])], 0, 4).seq, 4);
    assert.throws(() => paddedBatch([ex([1, 2])], 0, 1), /longer than seq/);
  });

  it('a packed batch has the loss of its examples run one by one (real engine)', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama', tokenizer: true, dtype: 'F32', initStd: 0.5 });
      const data = await TrainingData.open(dir, path.join(FIXTURES, 'chat.jsonl'), { maxSeqLen: 512 });
      const examples = [];
      for await (const e of data.examples()) examples.push(e);
      const more = await TrainingData.open(dir, path.join(FIXTURES, 'prompt-completion.jsonl'), { maxSeqLen: 512 });
      for await (const e of more.examples()) examples.push(e);
      const model = await loadWithRetry(dir);
      try {
        let sum = 0;
        let tokens = 0;
        for (const e of examples) {
          const r = await model.evalLoss({ inputIds: e.inputIds, labels: e.labels, batch: 1, seq: e.inputIds.length });
          sum += r.lossSum;
          tokens += r.tokens;
        }
        assert.ok(tokens > 0);
        const total = examples.reduce((s, e) => s + e.inputIds.length, 0);
        const packed = await model.evalLoss(packedBatch(packExamples(examples, total + 7, data.tokenizer.padTokenId)));
        assert.equal(packed.tokens, tokens);
        assert.ok(Math.abs(packed.lossSum - sum) <= 1e-4 * Math.abs(sum), `packed ${packed.lossSum} vs separate ${sum}`);
        const free = await model.evalLoss(paddingFreeBatch(examples));
        assert.equal(free.tokens, tokens);
        assert.ok(Math.abs(free.lossSum - sum) <= 1e-4 * Math.abs(sum), `padding-free ${free.lossSum} vs separate ${sum}`);
        const padded = await model.evalLoss(paddedBatch(examples, data.tokenizer.padTokenId));
        assert.equal(padded.tokens, tokens);
        assert.ok(Math.abs(padded.lossSum - sum) <= 1e-4 * Math.abs(sum), `padded ${padded.lossSum} vs separate ${sum}`);
      } finally {
        model.dispose();
      }
    });
  });
});

// The native addon can be busy being rebuilt by a concurrent build; retry a few times.
async function loadWithRetry(dir: string): Promise<EngineModel> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await EngineModel.load(dir, { method: 'f32' });
    } catch (e) {
      if (attempt >= 4 || !/native|addon|\.node/i.test(String(e))) throw e;
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
}
