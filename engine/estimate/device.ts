// The device an estimate is for: this machine's CPU (RAM), one of its GPUs by
// index, or a catalogue card by name. The engine has a CPU backend today; a
// GPU estimate is the same allocation plan (the CUDA backend allocates the
// same buffers) plus the GPU's fixed overheads (estimate.ts).
import os from 'node:os';
import { cpuInfo } from '../api.ts';
import { UserError } from '../model/errors.ts';
import { findGpu, similarGpus, type GpuVendor } from './gpus.ts';
import { detectHardware, type DetectedGpu, type DetectOptions, type HardwareInfo } from './hardware.ts';

export interface EstimateDevice {
  kind: 'cpu' | 'gpu';
  name: string;
  totalBytes: number;
  /** Free now (this machine); null for a catalogue card (all of it assumed usable). */
  availableBytes: number | null;
  source: 'this machine' | 'catalogue';
  vendor: GpuVendor | 'intel' | 'apple' | 'other' | null;
  /** NVIDIA compute capability, when known (sizes the cuBLAS workspace). */
  computeCapability: number | null;
  /** CPU threads whose per-thread scratch the plan counts (1 on a GPU). */
  threads: number;
}

/** This machine's CPU and RAM; threads = the engine's thread count. */
/** A GPU of this machine as an estimate device. */
export function gpuDevice(gpu: DetectedGpu): EstimateDevice {
  return {
    kind: 'gpu',
    name: gpu.name,
    totalBytes: gpu.totalBytes,
    availableBytes: gpu.freeBytes,
    source: 'this machine',
    vendor: gpu.vendor,
    computeCapability: findGpu(gpu.name)?.computeCapability ?? null,
    threads: 1,
  };
}

export function cpuDevice(): EstimateDevice {
  const cpus = os.cpus();
  return {
    kind: 'cpu',
    name: `CPU (${cpus[0]?.model.trim() ?? 'unknown'}, ${cpuInfo().threads} threads)`,
    totalBytes: os.totalmem(),
    availableBytes: os.freemem(),
    source: 'this machine',
    vendor: null,
    computeCapability: null,
    threads: cpuInfo().threads,
  };
}

/**
 * `cpu` (default), a GPU index of this machine (`0`, `1`, or `gpu` for the
 * first), or a catalogue card ("4090", "rtx 3060 12gb").
 */
export async function resolveDevice(spec: string | undefined, detect: DetectOptions = {}): Promise<{ device: EstimateDevice; hardware: HardwareInfo | null }> {
  const text = (spec ?? 'cpu').trim();
  if (text.toLowerCase() === 'cpu') return { device: cpuDevice(), hardware: null };
  if (/^\d{1,2}$/.test(text) || text.toLowerCase() === 'gpu') {
    const index = text.toLowerCase() === 'gpu' ? 0 : Number(text);
    const hardware = await detectHardware(detect);
    const gpu = hardware.gpus.find((g) => g.index === index);
    if (!gpu) {
      const have = hardware.gpus.length
        ? `this machine has ${hardware.gpus.map((g) => `${g.index}: ${g.name}`).join(', ')}`
        : `no GPU was detected (${hardware.notes.join('; ') || 'none reported'})`;
      throw new UserError(`--device: there is no GPU ${index}; ${have}. Use --device cpu, or a card name such as --device 4090 to plan for a card you do not have.`);
    }
    return {
      device: gpuDevice(gpu),
      hardware,
    };
  }
  const card = findGpu(text);
  if (!card)
    throw new UserError(
      `--device: '${text}' is not a GPU in the catalogue. Use cpu, a GPU index of this machine, or a card such as: ${similarGpus(text).join(', ')}`,
    );
  return {
    device: {
      kind: 'gpu',
      name: card.name,
      totalBytes: card.vramBytes,
      availableBytes: null,
      source: 'catalogue',
      vendor: card.vendor,
      computeCapability: card.computeCapability,
      threads: 1,
    },
    hardware: null,
  };
}
