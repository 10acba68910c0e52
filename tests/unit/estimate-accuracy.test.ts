// The memory estimate against the engine: for a grid of architectures,
// methods, ranks, sequence lengths, batch sizes and checkpointing, a random-
// weight model runs real training steps and the tracked allocator's peaks
// (memoryStats after resetMemoryPeaks) are compared with the plan, per
// category and for the total: within 5% (or 1 MiB for small categories) with
// the engine's thread count, to the byte with one thread.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { EngineModel, memoryStats, resetMemoryPeaks, type Projection } from '../../engine/api.ts';
import type { ModelArch, ModelConfig } from '../../engine/model/config.ts';
import { MEMORY_CATEGORIES, loadNative, type MemoryCategory } from '../../engine/native/binding.ts';
import { planTrainingMemory, type MemoryPlan, type TrainMethod } from '../../engine/estimate/plan.ts';

const MiB = 1024 * 1024;
const ALL: Projection[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const QV: Projection[] = ['q_proj', 'v_proj'];
const QKVO: Projection[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];

function shape(arch: ModelArch, o: Partial<ModelConfig> = {}): ModelConfig {
  return {
    arch, vocabSize: 4096, hiddenSize: 256, intermediateSize: 704, numLayers: 3, numHeads: 8, numKvHeads: 2,
    headDim: 32, rmsNormEps: 1e-6, ropeTheta: 10000, ropeScaling: null, maxPositionEmbeddings: 4096,
    tieWordEmbeddings: false, attentionBias: arch === 'qwen2', oProjBias: false, mlpBias: false,
    qkNorm: arch === 'qwen3', bosTokenId: null, eosTokenIds: [], torchDtype: 'bfloat16', slidingWindow: null, ...o,
  };
}

interface Case {
  name: string;
  config: ModelConfig;
  method: TrainMethod;
  rank: number;
  targets: Projection[];
  seq: number;
  batch: number;
  checkpointing: boolean;
}

const GRID: Case[] = [
  { name: 'llama lora r8 all ckpt', config: shape('llama'), method: 'lora', rank: 8, targets: ALL, seq: 256, batch: 2, checkpointing: true },
  { name: 'llama qlora r16 qv', config: shape('llama'), method: 'qlora', rank: 16, targets: QV, seq: 256, batch: 2, checkpointing: false },
  { name: 'llama 8 layers lora r32 all', config: shape('llama', { numLayers: 8 }), method: 'lora', rank: 32, targets: ALL, seq: 512, batch: 1, checkpointing: false },
  { name: 'llama qlora r8 seq1024 ckpt', config: shape('llama'), method: 'qlora', rank: 8, targets: ALL, seq: 1024, batch: 1, checkpointing: true },
  { name: 'llama tied lora r16 ckpt', config: shape('llama', { tieWordEmbeddings: true, numKvHeads: 8 }), method: 'lora', rank: 16, targets: ALL, seq: 512, batch: 2, checkpointing: true },
  { name: 'qwen2 lora r8 b4 ckpt', config: shape('qwen2', { vocabSize: 6144 }), method: 'lora', rank: 8, targets: ALL, seq: 128, batch: 4, checkpointing: true },
  { name: 'qwen2 small vocab qlora r8 ckpt', config: shape('qwen2', { vocabSize: 512 }), method: 'qlora', rank: 8, targets: ALL, seq: 1024, batch: 2, checkpointing: true },
  { name: 'qwen2 lora r4 qv b8', config: shape('qwen2', { vocabSize: 6144 }), method: 'lora', rank: 4, targets: QV, seq: 64, batch: 8, checkpointing: false },
  { name: 'qwen3 6 layers lora r16 all', config: shape('qwen3', { headDim: 64, numLayers: 6 }), method: 'lora', rank: 16, targets: ALL, seq: 256, batch: 2, checkpointing: false },
  { name: 'qwen3 qlora r4 qkvo ckpt', config: shape('qwen3', { headDim: 64 }), method: 'qlora', rank: 4, targets: QKVO, seq: 192, batch: 2, checkpointing: true },
  { name: 'mistral lora r8 ckpt', config: shape('mistral', { numKvHeads: 4 }), method: 'lora', rank: 8, targets: ALL, seq: 320, batch: 2, checkpointing: true },
  { name: 'mistral qlora r64 all', config: shape('mistral', { numKvHeads: 4 }), method: 'qlora', rank: 64, targets: ALL, seq: 256, batch: 1, checkpointing: false },
];

interface Measured {
  peak: Record<MemoryCategory, number>;
  totalPeak: number;
}

// A warm-up step creates the gradients and AdamW moments; the second step is measured.
async function measure(c: Case): Promise<Measured> {
  const model = await EngineModel.random(c.config, { method: c.method, seed: 1 });
  try {
    model.addAdapter('a', { rank: c.rank, alpha: 16, targets: c.targets, seed: 2 });
    const n = c.batch * c.seq;
    const ids = Int32Array.from({ length: n }, (_, i) => (i * 131 + 7) % c.config.vocabSize);
    const batch = { inputIds: ids, labels: ids, batch: c.batch, seq: c.seq, gradScale: 1 / n };
    await model.trainStep(batch, { checkpointing: c.checkpointing });
    await model.optimizerStep({ lr: 1e-3 });
    resetMemoryPeaks();
    await model.trainStep(batch, { checkpointing: c.checkpointing });
    await model.optimizerStep({ lr: 1e-3 });
    const s = memoryStats();
    return { peak: { ...s.peak }, totalPeak: s.totalPeak };
  } finally {
    model.dispose();
  }
}

function plan(c: Case, threads?: number): MemoryPlan {
  return planTrainingMemory({ config: c.config, method: c.method, rank: c.rank, targets: c.targets, seqLen: c.seq, batch: c.batch, checkpointing: c.checkpointing, threads });
}

const mib = (b: number) => (b / MiB).toFixed(2);
const rows: string[] = [];

describe('memory estimate vs the engine', () => {
  it('the native engine has the memory plan (rebuild it with npm run build:native if not)', () => {
    assert.equal(typeof loadNative().planMemory, 'function');
  });

  for (const c of GRID) {
    it(`${c.name}: every category and the total within 5% (or 1 MiB)`, async () => {
      const measured = await measure(c);
      const p = plan(c);
      const cells: string[] = [];
      for (const cat of MEMORY_CATEGORIES) {
        const est = p.peak[cat], got = measured.peak[cat];
        cells.push(`${cat} ${mib(est)}/${mib(got)}`);
        assert.ok(Math.abs(est - got) <= Math.max(0.05 * got, MiB), `${cat}: estimated ${mib(est)} MiB, measured ${mib(got)} MiB`);
      }
      const err = (100 * (p.peak.total - measured.totalPeak)) / measured.totalPeak;
      rows.push(`${c.name.padEnd(30)} total ${mib(p.peak.total)}/${mib(measured.totalPeak)} MiB (${err >= 0 ? '+' : ''}${err.toFixed(2)}%, peak: ${p.peakPhase}, ${p.peakPoint}) | ${cells.join(' | ')}`);
      assert.ok(Math.abs(p.peak.total - measured.totalPeak) <= 0.05 * measured.totalPeak, `total: estimated ${mib(p.peak.total)} MiB, measured ${mib(measured.totalPeak)} MiB`);
      assert.ok(measured.totalPeak > 16 * MiB, 'the model is big enough for the percentages to mean something');
    });
  }

  it('with one thread the estimate is exact to the byte', async () => {
    const native = loadNative();
    const threads = native.cpuInfo().threads;
    native.setThreads(1);
    try {
      for (const c of [GRID[0]!, GRID[8]!, GRID[9]!]) {
        const measured = await measure(c);
        const p = plan(c, 1);
        for (const cat of MEMORY_CATEGORIES) assert.equal(p.peak[cat], measured.peak[cat], `${c.name}: ${cat}`);
        assert.equal(p.peak.total, measured.totalPeak, `${c.name}: total`);
      }
    } finally {
      native.setThreads(threads);
    }
  });

  after(() => {
    console.log(`estimated/measured peak bytes per category (MiB), ${loadNative().cpuInfo().threads} threads\n${rows.join('\n')}`);
  });
});
