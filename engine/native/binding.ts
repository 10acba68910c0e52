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

// The raw addon surface. Arguments are validated by the TypeScript wrappers
// (engine/api.ts); the addon trusts them.
export interface NativeAddon {
  cpuInfo(): NativeCpuInfo;
  memoryStats(): NativeMemoryStats;
  resetPeaks(): void;
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
