// This machine: CPU, RAM, GPUs (engine/estimate/hardware.ts), the free disk
// of the app data folder, the devices a run can train on, and what they can
// train, in plain words, computed with the memory estimator's fit on the
// suggested models' shapes (main/models/suggested.ts):
//   "QLoRA up to 8B at 1024 tokens on the NVIDIA GeForce RTX 4060"
//   "On the CPU: small models only (LoRA up to 1.7B at 1024 tokens)"
// Never throws for missing tools: hardware detection leaves notes instead.
import { readFile, statfs } from 'node:fs/promises';
import { cpuDevice, gpuDevice, type EstimateDevice } from '../../engine/estimate/device.ts';
import { detectHardware, type DetectOptions, type HardwareInfo } from '../../engine/estimate/hardware.ts';
import { formatBytes } from '../../engine/estimate/report.ts';
import { CPU_PRACTICAL_MAX_PARAMETERS, SUGGESTED_MODELS, SUGGESTION_SEQ_LEN, fitOn, sizeLabel } from '../models/suggested.ts';

// The engine has a CPU backend only: runs train on the CPU, and a GPU's line
// says what the card will hold (the estimate plans the same buffers on it).
export const GPU_TRAINING_AVAILABLE = false;

export interface DiskInfo {
  dir: string; // the folder asked about
  freeBytes: number; // available to this user
  totalBytes: number;
}

export interface SystemInfo {
  cpu: { model: string; threads: number; physicalCores: number | null };
  ram: { totalBytes: number; availableBytes: number };
  gpus: HardwareInfo['gpus'];
  notes: string[]; // why a detection source gave nothing
  disk: DiskInfo | null; // null when the folder's file system cannot be asked
  /** Devices a run can train on: GPUs of this machine first, then the CPU. */
  devices: EstimateDevice[];
  /** Index into devices of the one runs use by default: the CPU until GPU training is available, then the GPU with most memory. */
  preferred: number;
  /** What this machine can train, one line per device, then any caveat. */
  summary: string[];
}

export interface SystemOptions {
  appDataDir: string;
  detect?: DetectOptions;
  seqLen?: number; // tokens the summary is computed at (default SUGGESTION_SEQ_LEN)
}

/** Free and total bytes of the file system holding `dir` (null when it cannot be read). */
export async function diskSpace(dir: string): Promise<DiskInfo | null> {
  try {
    const s = await statfs(dir);
    return { dir, freeBytes: Number(s.bavail) * Number(s.bsize), totalBytes: Number(s.blocks) * Number(s.bsize) };
  } catch {
    return null;
  }
}

// Linux: distinct (physical id, core id) pairs of /proc/cpuinfo. Elsewhere unknown.
async function physicalCores(): Promise<number | null> {
  if (process.platform !== 'linux') return null;
  const text = await readFile('/proc/cpuinfo', 'utf8').catch(() => null);
  if (!text) return null;
  const cores = new Set<string>();
  for (const block of text.split(/\n\s*\n/)) {
    const physical = /^physical id\s*:\s*(\d+)/m.exec(block)?.[1];
    const core = /^core id\s*:\s*(\d+)/m.exec(block)?.[1];
    if (physical !== undefined && core !== undefined) cores.add(`${physical}:${core}`);
  }
  return cores.size > 0 ? cores.size : null;
}

/** The estimator's devices for this machine's hardware: each GPU, then the CPU. */
export function devicesOf(hardware: HardwareInfo): EstimateDevice[] {
  const gpus: EstimateDevice[] = hardware.gpus.map(gpuDevice);
  return [...gpus, cpuDevice()];
}

/** One line of what `device` can train at `seqLen` tokens. */
export function capacityLine(device: EstimateDevice, seqLen = SUGGESTION_SEQ_LEN): string {
  // The largest suggested model that fits with each method (the list is sorted by size).
  const largest = (method: 'lora' | 'qlora') =>
    [...SUGGESTED_MODELS].reverse().find((m) => fitOn(m.config, m.name, device, method, seqLen) !== null) ?? null;
  const lora = largest('lora');
  const qlora = largest('qlora');
  if (device.kind === 'cpu') {
    const label = 'On the CPU';
    if (!qlora) return `${label}: not enough free memory (${formatBytes(device.availableBytes ?? device.totalBytes)}) for the smallest suggested model at ${seqLen} tokens.`;
    const best = lora ? `LoRA up to ${sizeLabel(lora.parameterCount)}` : `QLoRA up to ${sizeLabel(qlora.parameterCount)}`;
    return `${label}: small models only (${best} at ${seqLen} tokens; larger models train too slowly on a CPU, above about ${sizeLabel(CPU_PRACTICAL_MAX_PARAMETERS)}).`;
  }
  const where = `on the ${device.name} (${formatBytes(device.totalBytes)})`;
  if (!qlora) return `Nothing from the suggested models fits ${where} at ${seqLen} tokens, even with QLoRA.`;
  if (lora && lora.parameterCount >= qlora.parameterCount) return `LoRA up to ${sizeLabel(lora.parameterCount)} at ${seqLen} tokens ${where}.`;
  return lora
    ? `LoRA up to ${sizeLabel(lora.parameterCount)} and QLoRA up to ${sizeLabel(qlora.parameterCount)} at ${seqLen} tokens ${where}.`
    : `QLoRA up to ${sizeLabel(qlora.parameterCount)} at ${seqLen} tokens ${where}.`;
}

/** Everything the app shows about this machine. Never throws for missing tools or folders. */
export async function getSystemInfo(opts: SystemOptions): Promise<SystemInfo> {
  const [hardware, disk, cores] = await Promise.all([detectHardware(opts.detect), diskSpace(opts.appDataDir), physicalCores()]);
  const devices = devicesOf(hardware);
  // The GPU with the most memory (once the engine trains on GPUs); the CPU otherwise.
  let preferred = devices.length - 1;
  devices.forEach((d, i) => {
    if (GPU_TRAINING_AVAILABLE && d.kind === 'gpu' && (devices[preferred]!.kind === 'cpu' || d.totalBytes > devices[preferred]!.totalBytes)) preferred = i;
  });
  const seqLen = opts.seqLen ?? SUGGESTION_SEQ_LEN;
  const summary = devices.map((d) => capacityLine(d, seqLen));
  if (devices.some((d) => d.kind === 'gpu') && !GPU_TRAINING_AVAILABLE) {
    summary.push('Training runs on the CPU in this version; the GPU figures are what the card will hold once GPU training is available.');
  }
  if (!devices.some((d) => d.kind === 'gpu')) {
    summary.push(`No GPU was detected${hardware.notes.length ? ` (${hardware.notes.join('; ')})` : ''}: training runs on the CPU.`);
  }
  if (disk && disk.freeBytes < 20 * 1024 ** 3) {
    summary.push(`Only ${formatBytes(disk.freeBytes)} free on the disk of the app data folder: a 7-8B model needs about 16 GB to download.`);
  }
  return {
    cpu: { model: hardware.cpuModel, threads: hardware.cpuThreads, physicalCores: cores },
    ram: { totalBytes: hardware.ramTotalBytes, availableBytes: hardware.ramAvailableBytes },
    gpus: hardware.gpus,
    notes: hardware.notes,
    disk,
    devices,
    preferred,
    summary,
  };
}

/** "This machine can train: …": the summary as one sentence, for a status line. */
export function summarySentence(info: SystemInfo): string {
  const lines = info.summary.slice(0, info.devices.length).map((line) => line.replace(/\.$/, '').replace(/^On the CPU/, 'on the CPU'));
  return `This machine can train: ${lines.join('; ')}.`;
}
