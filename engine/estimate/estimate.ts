// The memory a training run will take on a device, before anything is
// loaded: the engine's allocation plan of one training step (plan.ts: peak
// bytes by the engine's categories and the point where the total peaks) plus
// the device's fixed overheads, against the device's memory.
//
// Devices. The engine has a CPU backend today. For a GPU the estimate is the
// same allocation plan (a CUDA backend allocates the same buffers on the
// device; the plan then counts one CPU thread's scratch, the GEMM workspace
// being cuBLAS's) plus the GPU's fixed overheads below.
//
// Fixed overheads, and where the numbers come from:
//   CPU  process baseline: Node.js/V8, the TypeScript loader and the engine
//        addon at rest. Measured: 75 MiB resident (Node 20, Linux x64,
//        process.memoryUsage().rss after loading engine/api.ts); counted as
//        80 MiB.
//   GPU  CUDA context: 300 MiB. With lazy module loading (the default since
//        CUDA 12.2 on Linux, 12.3 on Windows) a context measured 287,047,680
//        bytes in PyTorch's pull request #86509 (666,632,192 eager).
//        cuBLAS workspace: 4 MiB, 32 MiB from compute capability 9 on, the
//        sizes the cuBLAS documentation recommends (cublasSetWorkspace) and
//        PyTorch uses. AMD cards: the same context figure is assumed (no
//        ROCm backend yet).
import type { Projection } from '../api.ts';
import { MEMORY_CATEGORIES, type MemoryCategory, type NativeStepPhase } from '../native/binding.ts';
import type { EstimateDevice } from './device.ts';
import type { ModelShape } from './model-source.ts';
import { planTrainingMemory, type MemoryPlan, type TrainMethod } from './plan.ts';

const MiB = 1024 * 1024;
export const CPU_PROCESS_BASELINE_BYTES = 80 * MiB;
export const CUDA_CONTEXT_BYTES = 300 * MiB;
export const cublasWorkspaceBytes = (computeCapability: number | null) =>
  computeCapability !== null && computeCapability >= 9 ? 32 * MiB : 4 * MiB;

export const DEFAULT_TARGETS: readonly Projection[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

export interface RunChoices {
  method: TrainMethod;
  rank: number;
  targets: readonly Projection[];
  seqLen: number;
  batch: number;
  checkpointing: boolean;
}

export interface Overhead {
  name: string;
  bytes: number;
  source: string;
}

export interface MemoryEstimate {
  model: { name: string; source: 'preset' | 'folder'; arch: string };
  choices: RunChoices;
  device: EstimateDevice;
  /** Each category at the moment the step's total peaks (they sum to engineBytes). */
  categories: Record<MemoryCategory, number>;
  /** Each category's own peak over the step (they may peak at different moments). */
  categoryPeaks: Record<MemoryCategory, number>;
  /** Peak of the engine's total in each phase of the step. */
  phases: Record<NativeStepPhase, number>;
  peakPhase: NativeStepPhase;
  peakPoint: string;
  engineBytes: number;
  overheads: Overhead[];
  overheadBytes: number;
  /** The predicted peak: engineBytes + overheadBytes. */
  totalBytes: number;
  capacityBytes: number;
  /** What the total is checked against: the free memory when known, else the capacity. */
  usableBytes: number;
  fits: boolean;
  /** usableBytes − totalBytes (negative: short by that much). */
  marginBytes: number;
  plan: MemoryPlan;
}

export function deviceOverheads(device: EstimateDevice): Overhead[] {
  if (device.kind === 'cpu')
    return [{ name: 'process baseline', bytes: CPU_PROCESS_BASELINE_BYTES, source: 'measured: Node.js, loader and engine addon at rest (75 MiB)' }];
  const list: Overhead[] = [
    { name: device.vendor === 'amd' ? 'GPU runtime context' : 'CUDA context', bytes: CUDA_CONTEXT_BYTES, source: 'CUDA context with lazy loading (PyTorch #86509: 274 MiB)' },
  ];
  if (device.vendor !== 'amd')
    list.push({ name: 'cuBLAS workspace', bytes: cublasWorkspaceBytes(device.computeCapability), source: 'cuBLAS documentation, cublasSetWorkspace' });
  return list;
}

function categoryRecord(u: Record<MemoryCategory, number>): Record<MemoryCategory, number> {
  return Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, u[c]])) as Record<MemoryCategory, number>;
}

/** Peak memory of a training step of `model` with `choices` on `device`. */
export function estimateMemory(model: ModelShape, choices: RunChoices, device: EstimateDevice): MemoryEstimate {
  const plan = planTrainingMemory({ config: model.config, ...choices, threads: device.threads });
  const overheads = deviceOverheads(device);
  const overheadBytes = overheads.reduce((s, o) => s + o.bytes, 0);
  const totalBytes = plan.peak.total + overheadBytes;
  const usableBytes = device.availableBytes ?? device.totalBytes;
  return {
    model: { name: model.name, source: model.source, arch: model.config.arch },
    choices: { ...choices, targets: [...choices.targets] },
    device,
    categories: categoryRecord(plan.atPeak),
    categoryPeaks: categoryRecord(plan.peak),
    phases: { forward: plan.phases.forward.total, backward: plan.phases.backward.total, optimizer: plan.phases.optimizer.total },
    peakPhase: plan.peakPhase,
    peakPoint: plan.peakPoint,
    engineBytes: plan.peak.total,
    overheads,
    overheadBytes,
    totalBytes,
    capacityBytes: device.totalBytes,
    usableBytes,
    fits: totalBytes <= usableBytes,
    marginBytes: usableBytes - totalBytes,
    plan,
  };
}
