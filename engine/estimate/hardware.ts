// What this machine has: RAM (total and available), CPU threads, and each
// GPU's name, total and free memory and driver.
//
// NVIDIA GPUs come from `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`
// (memory in MiB), run with a timeout; other GPUs (AMD, Intel, Apple) from the
// systeminformation library, run in a child process with a timeout because it
// calls external tools synchronously. Detection never throws and never hangs:
// a missing tool, a tool that fails or one that does not answer in time only
// leaves a note.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import { pathToFileURL } from 'node:url';

export interface DetectedGpu {
  index: number;
  name: string;
  vendor: 'nvidia' | 'amd' | 'intel' | 'apple' | 'other';
  totalBytes: number;
  freeBytes: number | null; // null when the tool does not report it
  driver: string | null;
  source: 'nvidia-smi' | 'systeminformation';
}

export interface HardwareInfo {
  ramTotalBytes: number;
  ramAvailableBytes: number; // what the OS reports as available (Linux: MemAvailable)
  cpuModel: string;
  cpuThreads: number;
  gpus: DetectedGpu[];
  notes: string[]; // why a source gave nothing, e.g. "nvidia-smi did not answer within 5 s"
}

export interface DetectOptions {
  /** Per external tool; default 5000 ms. */
  timeoutMs?: number;
  /** The nvidia-smi command (default 'nvidia-smi', found on PATH). */
  nvidiaSmi?: string;
  /** Also ask systeminformation for non-NVIDIA GPUs (default true). */
  otherGpus?: boolean;
}

const MiB = 1024 * 1024;
export const NVIDIA_SMI_QUERY = ['--query-gpu=index,name,memory.total,memory.free,driver_version', '--format=csv,noheader,nounits'];

/**
 * Parses the output of `nvidia-smi --query-gpu=index,name,memory.total,memory.free,driver_version
 * --format=csv,noheader,nounits`: one line per GPU, memory in MiB. A value
 * nvidia-smi cannot read ("[N/A]", "[Not Supported]") becomes null; a line
 * that does not parse is skipped.
 */
export function parseNvidiaSmi(text: string): DetectedGpu[] {
  const gpus: DetectedGpu[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (!line.trim()) continue;
    const fields = line.split(',').map((f) => f.trim());
    if (fields.length < 5) continue;
    // A name may itself hold a comma: the index is first, the last three are numbers and the driver.
    const [indexText] = fields;
    const driverText = fields[fields.length - 1]!;
    const freeText = fields[fields.length - 2]!;
    const totalText = fields[fields.length - 3]!;
    const name = fields.slice(1, fields.length - 3).join(', ');
    const index = Number(indexText);
    const total = mib(totalText);
    if (!Number.isInteger(index) || total === null || !name) continue;
    gpus.push({
      index,
      name,
      vendor: 'nvidia',
      totalBytes: total,
      freeBytes: mib(freeText),
      driver: /^\[.*\]$/.test(driverText) || !driverText ? null : driverText,
      source: 'nvidia-smi',
    });
  }
  return gpus;
}

function mib(text: string): number | null {
  if (!/^\d+(\.\d+)?$/.test(text)) return null;
  return Math.round(Number(text) * MiB);
}

type ToolResult = { ok: true; stdout: string } | { ok: false; why: string };

// Runs a command with a deadline. On timeout the whole process group is
// killed and the promise settles at once, even if a grandchild keeps the
// pipes open.
export function runWithTimeout(command: string, args: readonly string[], timeoutMs: number): Promise<ToolResult> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (r: ToolResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: process.platform !== 'win32',
      windowsHide: true,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      try {
        if (child.pid !== undefined && process.platform !== 'win32') process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        // already gone
      }
      child.stdout.destroy();
      child.stderr.destroy();
      settle({ ok: false, why: `${command} did not answer within ${timeoutMs / 1000} s` });
    }, timeoutMs);
    child.on('error', (e: NodeJS.ErrnoException) =>
      settle({ ok: false, why: e.code === 'ENOENT' ? `${command} is not installed (not on PATH)` : `${command} could not run: ${e.message}` }),
    );
    child.on('close', (code) => {
      if (code === 0) settle({ ok: true, stdout });
      else settle({ ok: false, why: `${command} failed (exit ${code}): ${stderr.trim().split('\n')[0] ?? ''}`.trim() });
    });
  });
}

/** NVIDIA GPUs via nvidia-smi, or the reason there are none. */
export async function queryNvidiaSmi(opts: { command?: string; timeoutMs?: number } = {}): Promise<{ gpus: DetectedGpu[]; note: string | null }> {
  const r = await runWithTimeout(opts.command ?? 'nvidia-smi', NVIDIA_SMI_QUERY, opts.timeoutMs ?? 5000);
  if (!r.ok) return { gpus: [], note: r.why };
  const gpus = parseNvidiaSmi(r.stdout);
  return { gpus, note: gpus.length ? null : 'nvidia-smi listed no GPU' };
}

// The systeminformation query, run by a child Node process (it prints JSON).
const OTHER_GPUS_SCRIPT = `
const si = (await import(process.argv[1])).default;
const g = await si.graphics();
process.stdout.write(JSON.stringify(g.controllers.map((c) => ({ vendor: c.vendor, model: c.model, vram: c.vram, vramDynamic: c.vramDynamic, driver: c.driverVersion ?? null }))));
`;

function vendorOf(text: string): DetectedGpu['vendor'] {
  const t = text.toLowerCase();
  if (/nvidia/.test(t)) return 'nvidia';
  if (/amd|ati|radeon|advanced micro/.test(t)) return 'amd';
  if (/intel/.test(t)) return 'intel';
  if (/apple/.test(t)) return 'apple';
  return 'other';
}

/** GPUs systeminformation reports (non-NVIDIA ones, or all when nvidia-smi gave none). */
export async function queryOtherGpus(timeoutMs: number, includeNvidia: boolean): Promise<{ gpus: DetectedGpu[]; note: string | null }> {
  let moduleUrl: string;
  try {
    moduleUrl = pathToFileURL(createRequire(import.meta.url).resolve('systeminformation')).href;
  } catch {
    return { gpus: [], note: 'the systeminformation package is not installed' };
  }
  const r = await runWithTimeout(process.execPath, ['--input-type=module', '-e', OTHER_GPUS_SCRIPT, moduleUrl], timeoutMs);
  if (!r.ok) return { gpus: [], note: r.why.replace(process.execPath, 'the GPU query (systeminformation)') };
  let list: { vendor?: string; model?: string; vram?: number | null; vramDynamic?: boolean; driver?: string | null }[];
  try {
    list = JSON.parse(r.stdout);
  } catch {
    return { gpus: [], note: 'the GPU query (systeminformation) gave unreadable output' };
  }
  const gpus: DetectedGpu[] = [];
  for (const c of list) {
    const name = [c.vendor, c.model].filter(Boolean).join(' ').trim() || 'unknown GPU';
    const vendor = vendorOf(name);
    if (vendor === 'nvidia' && !includeNvidia) continue;
    // Shared-memory and virtual display adapters report little or no VRAM of their own.
    if (!c.vram || c.vramDynamic || c.vram < 1024) continue;
    gpus.push({ index: gpus.length, name, vendor, totalBytes: c.vram * MiB, freeBytes: null, driver: c.driver || null, source: 'systeminformation' });
  }
  return { gpus, note: null };
}

/** RAM, CPU and GPUs of this machine. Never throws, never waits longer than the timeouts. */
export async function detectHardware(opts: DetectOptions = {}): Promise<HardwareInfo> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const notes: string[] = [];
  const nvidia = await queryNvidiaSmi({ command: opts.nvidiaSmi, timeoutMs });
  if (nvidia.note) notes.push(nvidia.note);
  let gpus = nvidia.gpus;
  // systeminformation calls nvidia-smi itself, synchronously: skip it when
  // nvidia-smi hung, so a broken driver cannot stall it.
  const smiHung = nvidia.note?.includes('did not answer') ?? false;
  if (opts.otherGpus !== false && !smiHung) {
    const other = await queryOtherGpus(timeoutMs, nvidia.gpus.length === 0);
    if (other.note) notes.push(other.note);
    gpus = [...gpus, ...other.gpus.map((g, i) => ({ ...g, index: nvidia.gpus.length + i }))];
  }
  const cpus = os.cpus();
  return {
    ramTotalBytes: os.totalmem(),
    ramAvailableBytes: os.freemem(),
    cpuModel: cpus[0]?.model.trim() ?? 'unknown CPU',
    cpuThreads: cpus.length || 1,
    gpus,
    notes,
  };
}
