// The best training settings that fit a device, by the memory estimate.
//
// Safety margin: a setting fits when its predicted peak is at most 90% of the
// device's usable memory (free memory on this machine, the whole card for a
// catalogue card): 10% is kept free for what the estimate does not see
// (allocator fragmentation, other programs, the data pipeline's buffers).
//
// Search, the user's fixed choices kept as given:
//   1. the longest sequence length of the ladder (4096, 2048, 1024, 512, 256;
//      not beyond the model's context) that fits at batch 1 and the smallest
//      rank, taking the first setup that fits of: LoRA, LoRA + gradient
//      checkpointing, QLoRA, QLoRA + gradient checkpointing. Checkpointing and
//      QLoRA are switched on only when needed, and the result says so;
//   2. then the largest batch (16, 8, 4, 2, 1) that fits;
//   3. then the largest rank (64, 32, 16, 8, 4) that fits.
// If nothing fits, it says what would: a smaller model, or a bigger card.
import type { Projection } from '../api.ts';
import { MODEL_PRESETS, MODEL_PRESET_NAMES } from '../model/presets.ts';
import { GPU_CATALOGUE } from './gpus.ts';
import type { EstimateDevice } from './device.ts';
import { DEFAULT_TARGETS, estimateMemory, type MemoryEstimate, type RunChoices } from './estimate.ts';
import type { ModelShape } from './model-source.ts';
import type { TrainMethod } from './plan.ts';
import { formatBytes } from './report.ts';

export const FIT_SAFETY_MARGIN = 0.1;
export const SEQ_LADDER = [4096, 2048, 1024, 512, 256] as const;
export const BATCH_LADDER = [16, 8, 4, 2, 1] as const;
export const RANK_LADDER = [64, 32, 16, 8, 4] as const;

export interface FixedChoices {
  method?: TrainMethod;
  rank?: number;
  targets?: readonly Projection[];
  seqLen?: number;
  batch?: number;
  checkpointing?: boolean;
}

export interface FitResult {
  found: boolean;
  /** The settings chosen, and their estimate (when found). */
  choices: RunChoices | null;
  estimate: MemoryEstimate | null;
  /** Usable memory × (1 − safetyMargin): what a setting must stay under. */
  budgetBytes: number;
  safetyMargin: number;
  /** What was switched on and why, in words. */
  changes: string[];
  /** When nothing fits: what would (a smaller model, a bigger card). */
  suggestions: string[];
}

interface Setup {
  method: TrainMethod;
  checkpointing: boolean;
}
const SETUPS: readonly Setup[] = [
  { method: 'lora', checkpointing: false },
  { method: 'lora', checkpointing: true },
  { method: 'qlora', checkpointing: false },
  { method: 'qlora', checkpointing: true },
];

export function budgetOf(device: EstimateDevice, safetyMargin = FIT_SAFETY_MARGIN): number {
  return Math.floor((device.availableBytes ?? device.totalBytes) * (1 - safetyMargin));
}

/** Finds the best settings for `model` on `device` under the safety margin. */
export function fitSettings(model: ModelShape, device: EstimateDevice, fixed: FixedChoices = {}, safetyMargin = FIT_SAFETY_MARGIN): FitResult {
  const budgetBytes = budgetOf(device, safetyMargin);
  const targets = fixed.targets ?? DEFAULT_TARGETS;
  const estimate = (c: RunChoices) => estimateMemory(model, c, device);
  const fits = (c: RunChoices) => estimate(c).totalBytes <= budgetBytes;

  const seqs = fixed.seqLen !== undefined ? [fixed.seqLen] : SEQ_LADDER.filter((s) => s <= model.config.maxPositionEmbeddings);
  const batches = fixed.batch !== undefined ? [fixed.batch] : [...BATCH_LADDER];
  const ranks = fixed.rank !== undefined ? [fixed.rank] : [...RANK_LADDER];
  const setups = SETUPS.filter((s) => (fixed.method === undefined || s.method === fixed.method) &&
    (fixed.checkpointing === undefined || s.checkpointing === fixed.checkpointing));
  const smallestBatch = batches[batches.length - 1]!;
  const smallestRank = ranks[ranks.length - 1]!;

  for (const seqLen of seqs) {
    const setup = setups.find((s) => fits({ ...s, seqLen, batch: smallestBatch, rank: smallestRank, targets }));
    if (!setup) continue;
    const base = { ...setup, seqLen, targets };
    const batch = batches.find((b) => fits({ ...base, batch: b, rank: smallestRank }))!;
    const rank = ranks.find((r) => fits({ ...base, batch, rank: r }))!;
    const choices: RunChoices = { ...base, batch, rank, targets: [...targets] };
    return {
      found: true,
      choices,
      estimate: estimate(choices),
      budgetBytes,
      safetyMargin,
      changes: explainSetup(setup, fixed, { seqLen, batch: smallestBatch, rank: smallestRank, targets }, estimate),
      suggestions: [],
    };
  }
  const smallest: RunChoices = {
    method: fixed.method ?? 'qlora',
    checkpointing: fixed.checkpointing ?? true,
    seqLen: seqs[seqs.length - 1] ?? 256,
    batch: smallestBatch,
    rank: smallestRank,
    targets: [...targets],
  };
  return { found: false, choices: null, estimate: null, budgetBytes, safetyMargin, changes: [], suggestions: suggest(model, device, smallest, safetyMargin) };
}

// Why checkpointing or QLoRA is on: what the lighter setups would need.
function explainSetup(chosen: Setup, fixed: FixedChoices, rest: Omit<RunChoices, 'method' | 'checkpointing'>, estimate: (c: RunChoices) => MemoryEstimate): string[] {
  const out: string[] = [];
  const need = (s: Setup) => formatBytes(estimate({ ...rest, ...s }).totalBytes);
  if (chosen.method === 'qlora' && fixed.method === undefined) {
    const lighter = { method: 'lora' as const, checkpointing: fixed.checkpointing ?? true };
    out.push(`QLoRA (4-bit NF4 base): with a bf16 base, seq-len ${rest.seqLen} needs ${need(lighter)} even with the lightest other settings.`);
  }
  if (chosen.checkpointing && fixed.checkpointing === undefined) {
    out.push(`gradient checkpointing on: without it, seq-len ${rest.seqLen} needs ${need({ method: chosen.method, checkpointing: false })}.`);
  }
  return out;
}

function suggest(model: ModelShape, device: EstimateDevice, smallest: RunChoices, safetyMargin: number): string[] {
  const out: string[] = [];
  const need = estimateMemory(model, smallest, device).totalBytes;
  out.push(
    `Even the lightest settings (${smallest.method === 'qlora' ? 'QLoRA' : 'LoRA'}, checkpointing ${smallest.checkpointing ? 'on' : 'off'}, seq-len ${smallest.seqLen}, batch ${smallest.batch}, rank ${smallest.rank}) need ${formatBytes(need)}; ${device.name} allows ${formatBytes(budgetOf(device, safetyMargin))} with the 10% margin.`,
  );
  // A smaller model: the largest preset with fewer weights that fits the same settings here.
  const presets = MODEL_PRESET_NAMES.map((name) => ({ name, config: MODEL_PRESETS[name] }))
    .map((p) => ({ ...p, shape: { name: p.name, config: p.config, source: 'preset' as const, dir: null } }))
    .map((p) => ({ ...p, bytes: estimateMemory(p.shape, smallest, device).totalBytes }))
    .filter((p) => p.bytes < need && p.bytes <= budgetOf(device, safetyMargin))
    .sort((a, b) => b.bytes - a.bytes);
  if (presets[0]) out.push(`A smaller model fits: ${presets[0].name} (${formatBytes(presets[0].bytes)} with these settings).`);
  else out.push('No preset model fits this device with these settings.');
  if (device.kind === 'gpu') {
    // The smallest memory that fits; among cards with it, the newest (listed last).
    const card = GPU_CATALOGUE.map((g, order) => ({ g, order }))
      .filter(({ g }) => !g.laptop && g.vramBytes > device.totalBytes)
      .map(({ g, order }) => ({ g, order, dev: { ...device, name: g.name, totalBytes: g.vramBytes, availableBytes: null, vendor: g.vendor, computeCapability: g.computeCapability, source: 'catalogue' as const } }))
      .filter(({ dev }) => estimateMemory(model, smallest, dev).totalBytes <= budgetOf(dev, safetyMargin))
      .sort((a, b) => a.g.vramBytes - b.g.vramBytes || b.order - a.order)[0];
    out.push(card ? `A bigger card fits: ${card.g.vramBytes / 1024 ** 3} GB or more, e.g. ${card.g.name}.` : 'No card in the catalogue is big enough for this model.');
  } else {
    out.push(`More memory: this needs ${formatBytes(Math.ceil(need / (1 - safetyMargin)))} of free RAM with the margin.`);
  }
  return out;
}
