// `npm run bench`: training throughput, memory per category and peak process
// memory for LoRA and QLoRA steps on random-weight models of well-known shapes,
// the same LoRA step in PyTorch (transformers + PEFT, fp32) when installed,
// and GEMM throughput against this machine's measured peak.
//
//   npm run bench [-- --json] [--models SmolLM2-135M,Llama-3.2-1B] [--methods lora,qlora]
//                 [--steps N] [--no-reference]
//
// Each configuration runs in its own child process so its peak RSS is its own.
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EngineModel, PROJECTIONS, cpuInfo, memoryStats, resetMemoryPeaks, type BaseMethod } from '../engine/api.ts';
import type { ModelConfig } from '../engine/model/config.ts';
import { MODEL_PRESETS, type ModelPresetName } from '../engine/model/presets.ts';
import { MEMORY_CATEGORIES, loadNative, type MemoryCategory } from '../engine/native/binding.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

interface RunSpec {
  preset: ModelPresetName;
  method: BaseMethod;
  seq: number;
  steps: number;
  warmup: number;
  rank: number;
}

interface EngineResult {
  stepSeconds: number[];
  tokensPerSecond: number;
  buildSeconds: number;
  peakBytes: Record<MemoryCategory, number>;
  peakTotalBytes: number;
  peakRssBytes: number;
}

// ---- one configuration (child process) ------------------------------------------------

async function runOne(spec: RunSpec): Promise<EngineResult> {
  const config = MODEL_PRESETS[spec.preset];
  const t0 = performance.now();
  const model = await EngineModel.random(config, { method: spec.method, seed: 1 });
  const buildSeconds = (performance.now() - t0) / 1000;
  model.addAdapter('bench', { rank: spec.rank, alpha: 2 * spec.rank, targets: [...PROJECTIONS] });
  const ids = new Int32Array(spec.seq);
  for (let i = 0; i < spec.seq; ++i) ids[i] = (i * 7919) % config.vocabSize;
  const batch = { inputIds: ids, labels: ids, batch: 1, seq: spec.seq, gradScale: 1 / (spec.seq - 1) };
  const step = async () => {
    const start = performance.now();
    await model.trainStep(batch);
    await model.optimizerStep({ lr: 1e-4 });
    return (performance.now() - start) / 1000;
  };
  for (let i = 0; i < spec.warmup; ++i) await step();
  resetMemoryPeaks();
  const stepSeconds: number[] = [];
  for (let i = 0; i < spec.steps; ++i) stepSeconds.push(await step());
  const stats = memoryStats();
  const mean = stepSeconds.reduce((a, b) => a + b, 0) / stepSeconds.length;
  model.dispose();
  return {
    stepSeconds,
    tokensPerSecond: (spec.seq - 1) / mean,
    buildSeconds,
    peakBytes: stats.peak,
    peakTotalBytes: stats.totalPeak,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

// ---- the reference (PyTorch) ---------------------------------------------------------------

function hfConfig(c: ModelConfig): Record<string, unknown> {
  const rope = c.ropeScaling?.type === 'llama3'
    ? { rope_type: 'llama3', factor: c.ropeScaling.factor, low_freq_factor: c.ropeScaling.lowFreqFactor, high_freq_factor: c.ropeScaling.highFreqFactor, original_max_position_embeddings: c.ropeScaling.originalMaxPositionEmbeddings }
    : null;
  return {
    model_type: c.arch, vocab_size: c.vocabSize, hidden_size: c.hiddenSize, intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers, num_attention_heads: c.numHeads, num_key_value_heads: c.numKvHeads, head_dim: c.headDim,
    rms_norm_eps: c.rmsNormEps, rope_theta: c.ropeTheta, max_position_embeddings: c.maxPositionEmbeddings,
    tie_word_embeddings: c.tieWordEmbeddings, ...(rope ? { rope_scaling: rope } : {}),
  };
}

function python(): string | null {
  const exe = process.env.LORA_STUDIO_PYTHON ?? 'python3';
  const r = spawnSync(exe, ['-c', 'import torch, transformers, peft'], { stdio: 'ignore' });
  return r.status === 0 ? exe : null;
}

function runReference(exe: string, spec: RunSpec): { tokensPerSecond: number; peakRssBytes: number; stepSeconds: number[] } | { skipped: string } {
  const c = MODEL_PRESETS[spec.preset];
  const params = c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2) +
    c.numLayers * (2 * c.hiddenSize * c.numHeads * c.headDim + 2 * c.hiddenSize * c.numKvHeads * c.headDim + 3 * c.hiddenSize * c.intermediateSize);
  if (params * 4 > os.totalmem() * 0.6) return { skipped: `fp32 model needs ${(params * 4 / 2 ** 30).toFixed(0)} GiB` };
  const arg = JSON.stringify({ config: hfConfig(c), seq: spec.seq, steps: spec.steps, warmup: spec.warmup, rank: spec.rank, checkpointing: true });
  const r = spawnSync(exe, [path.join(here, 'bench_hf.py'), arg], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) return { skipped: `reference failed: ${(r.stderr || '').trim().split('\n').slice(-1)[0]}` };
  return JSON.parse(r.stdout.trim().split('\n').slice(-1)[0]!);
}

// ---- the parent --------------------------------------------------------------------------

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const gib = (b: number) => (b / 2 ** 30).toFixed(2);
const mib = (b: number) => (b / 2 ** 20).toFixed(1);

async function main() {
  const childSpec = arg('--child');
  if (childSpec) {
    console.log(JSON.stringify(await runOne(JSON.parse(childSpec) as RunSpec)));
    return;
  }
  const json = process.argv.includes('--json');
  const log = (s: string) => { if (!json) process.stderr.write(s + '\n'); };
  const models = (arg('--models')?.split(',') ?? ['SmolLM2-135M', 'Llama-3.2-1B', 'Llama-3.1-8B']) as ModelPresetName[];
  const methods = (arg('--methods')?.split(',') ?? ['lora', 'qlora']) as BaseMethod[];
  const stepsArg = arg('--steps');
  for (const m of models) if (!(m in MODEL_PRESETS)) throw new Error(`--models: unknown preset '${m}'; known: ${Object.keys(MODEL_PRESETS).join(', ')}`);

  const native = loadNative() as unknown as { measurePeakFlops(s: number): Promise<number>; benchLinear(t: number, o: number, i: number, k: string, it: number): Promise<number> };
  const cpu = cpuInfo();
  log(`# LoRA Studio bench — ${os.cpus()[0]?.model ?? 'cpu'}, ${cpu.threads} threads, kernels ${cpu.isa}`);
  const peak = await native.measurePeakFlops(1.0);
  const gemm = [];
  for (const [t, o, i] of [[512, 2048, 2048], [512, 8192, 2048], [512, 576, 1536], [512, 14336, 4096]] as const) {
    for (const kind of ['f32', 'bf16', 'nf4']) {
      const sec = await native.benchLinear(t, o, i, kind, 3);
      const flops = (2 * t * o * i) / sec;
      gemm.push({ shape: `${t}x${i} · (${o}x${i})ᵀ`, weights: kind, gflops: flops / 1e9, ofPeak: flops / peak });
    }
  }
  log(`\nGEMM (linear forward), measured FMA peak ${(peak / 1e9).toFixed(1)} GFLOP/s`);
  for (const g of gemm) log(`  ${g.shape.padEnd(28)} ${g.weights.padEnd(5)} ${g.gflops.toFixed(1).padStart(7)} GFLOP/s  ${(100 * g.ofPeak).toFixed(0).padStart(3)}% of peak`);

  const exe = process.argv.includes('--no-reference') ? null : python();
  const rows = [];
  for (const preset of models) {
    const big = preset === 'Llama-3.1-8B';
    for (const method of methods) {
      const spec: RunSpec = { preset, method, seq: big ? 256 : 512, steps: stepsArg ? Number(stepsArg) : big ? 2 : 3, warmup: big ? 0 : 1, rank: 16 };
      log(`\n${preset} ${method} seq ${spec.seq}: running…`);
      const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', JSON.stringify(spec)], { encoding: 'utf8', maxBuffer: 1 << 24 });
      if (r.status !== 0) {
        const error = (r.stderr || '').trim().split('\n').slice(-3).join(' ');
        rows.push({ ...spec, error });
        log(`  failed: ${error}`);
        continue;
      }
      const result = JSON.parse(r.stdout.trim().split('\n').slice(-1)[0]!) as EngineResult;
      let reference = null;
      if (exe && method === 'lora') {
        log(`  reference (PyTorch fp32)…`);
        reference = runReference(exe, spec);
      }
      rows.push({ ...spec, ...result, reference });
    }
  }

  if (json) {
    console.log(JSON.stringify({ machine: { cpu: os.cpus()[0]?.model, threads: cpu.threads, isa: cpu.isa, totalMemBytes: os.totalmem() }, peakFlops: peak, gemm, runs: rows }));
    return;
  }
  console.log('\nmodel          method seq   tokens/s  step s   ' + MEMORY_CATEGORIES.map((c) => c.slice(0, 9).padStart(10)).join('') + '   total MiB  RSS GiB   vs PyTorch');
  for (const row of rows) {
    if ('error' in row) {
      console.log(`${row.preset.padEnd(14)} ${row.method.padEnd(6)} ${String(row.seq).padEnd(5)} failed: ${row.error}`);
      continue;
    }
    const r = row as unknown as RunSpec & EngineResult & { reference: null | { tokensPerSecond: number } | { skipped: string } };
    const mean = r.stepSeconds.reduce((a, b) => a + b, 0) / r.stepSeconds.length;
    let vs = '';
    if (r.reference && 'tokensPerSecond' in r.reference) vs = `${(r.tokensPerSecond / r.reference.tokensPerSecond).toFixed(2)}× (${r.reference.tokensPerSecond.toFixed(1)} tok/s)`;
    else if (r.reference && 'skipped' in r.reference) vs = `skipped: ${r.reference.skipped}`;
    console.log(
      `${r.preset.padEnd(14)} ${r.method.padEnd(6)} ${String(r.seq).padEnd(5)} ${r.tokensPerSecond.toFixed(1).padStart(8)} ${mean.toFixed(2).padStart(7)}   ` +
        MEMORY_CATEGORIES.map((c) => mib(r.peakBytes[c]).padStart(10)).join('') +
        `   ${mib(r.peakTotalBytes).padStart(9)}  ${gib(r.peakRssBytes).padStart(7)}   ${vs}`,
    );
  }
}

await main();
