// Loads the compiled Node-API addon. The same binary loads in Node and in
// Electron (Node-API is ABI-stable across both).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type MemoryCategory = 'base' | 'adapters' | 'gradients' | 'optimizer' | 'activations' | 'workspace';
export const MEMORY_CATEGORIES: readonly MemoryCategory[] = ['base', 'adapters', 'gradients', 'optimizer', 'activations', 'workspace'];

export interface NativeMemoryStats {
  current: Record<MemoryCategory, number>;
  peak: Record<MemoryCategory, number>;
  totalCurrent: number;
  totalPeak: number;
}

export interface NativeCpuInfo {
  isa: 'avx512' | 'avx2' | 'scalar';
  detectedIsa: 'avx512' | 'avx2' | 'scalar';
  threads: number;
}

/** Shape fields of a model, as NativeModel and planMemory take them. */
export interface NativeModelShape {
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  qkNorm: boolean;
  tied: boolean;
}

/** One training step to plan (validated by engine/estimate/plan.ts). */
export interface NativePlanSpec {
  config: NativeModelShape;
  format: 'bf16' | 'nf4' | 'f32';
  /** targetMask: bit p set = projection p (q, k, v, o, gate, up, down) adapted. */
  adapters: { rank: number; targetMask: number }[];
  batch: number;
  seq: number;
  checkpointing: boolean;
  /** Examples packed into rows (attention segments). */
  packed: boolean;
  /** Pool threads (per-thread scratch); default: the engine's thread count. */
  threads?: number;
}

/** Bytes per category and their sum. */
export type NativeMemoryUsage = Record<MemoryCategory, number> & { total: number };

export type NativeStepPhase = 'forward' | 'backward' | 'optimizer';

/** The memory plan of one training step (engine/native/src/model/memory_plan.h). */
export interface NativeMemoryPlan {
  threads: number;
  isa: 'avx512' | 'avx2' | 'scalar';
  /** Held across steps: base weights, adapters, gradients, optimizer state. */
  resident: NativeMemoryUsage;
  /** Per phase: each category's peak, and total = the peak of the sum. */
  phases: Record<NativeStepPhase, NativeMemoryUsage>;
  /** The whole step: each category's peak, and total = the peak of the sum. */
  peak: NativeMemoryUsage;
  /** Every category at the moment the total peaks (sums to peak.total). */
  atPeak: NativeMemoryUsage;
  peakPhase: NativeStepPhase;
  /** Where the total peaks, e.g. "layer 3 attention backward". */
  peakPoint: string;
}

// The raw addon surface. Arguments are validated by the TypeScript wrappers
// (engine/api.ts, engine/estimate/plan.ts); the addon trusts them.
export interface NativeAddon {
  cpuInfo(): NativeCpuInfo;
  memoryStats(): NativeMemoryStats;
  resetPeaks(): void;
  setThreads(threads: number): void;
  planMemory(spec: NativePlanSpec): NativeMemoryPlan;
  [name: string]: unknown;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const projectRoot = path.resolve(here, '..', '..');

function candidatePaths(): string[] {
  const fromEnv = process.env.LORA_STUDIO_NATIVE;
  const list = [
    path.join(projectRoot, 'build', 'native', 'lora_studio_native.node'),
    path.join(projectRoot, 'build', 'native', 'Release', 'lora_studio_native.node'),
  ];
  return fromEnv ? [fromEnv, ...list] : list;
}

let cached: NativeAddon | undefined;

export function loadNative(): NativeAddon {
  if (cached) return cached;
  const found = candidatePaths().find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `The LoRA Studio native engine is not built (looked for ${candidatePaths().join(', ')}). ` +
        'Run "npm run build:native" (needs CMake and a C++17 compiler).',
    );
  }
  cached = createRequire(import.meta.url)(found) as NativeAddon;
  return cached;
}
