// Shared by the command-line tests: running `node bin/lora-studio.mjs …` as a
// child process, running main() in-process with collected output, and tiny
// models, adapters and datasets in temp folders.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EngineModel, type Projection } from '../../../engine/api.ts';
import { savePeftAdapter } from '../../../engine/adapters/peft.ts';
import { main } from '../../../engine/cli/main.ts';
import { createTinyModel } from '../../../engine/model/tiny.ts';
import { rng, tempDir } from './engine-fixtures.ts';

export { tempDir };

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = path.join(ROOT, 'bin', 'lora-studio.mjs');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string>;
  /** Sees stdout as it arrives (e.g. to send SIGINT after the first step event). */
  onStdout?: (soFar: string, child: ChildProcess) => void;
  /** Kills the child after this long (a hung command fails the test instead of the suite). Default 120 s. */
  timeoutMs?: number;
}

/** Runs `node bin/lora-studio.mjs ...args` and collects its output. */
export function runCli(args: readonly string[], opts: RunOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      opts.onStdout?.(stdout, child);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs main() in this process; every write to stdout is kept as its own piece. */
export async function runInProcess(args: readonly string[]): Promise<{ code: number; writes: string[]; stdout: string; stderr: string }> {
  const writes: string[] = [];
  let stderr = '';
  const code = await main(args, {
    stdout: { write: (s: string) => writes.push(s) },
    stderr: { write: (s: string) => (stderr += s) },
  });
  return { code, writes, stdout: writes.join(''), stderr };
}

/** A tiny llama model with the byte-level tokenizer and the ChatML template. */
export async function tinyChatModel(root: string, name = 'model'): Promise<string> {
  const dir = path.join(root, name);
  await createTinyModel(dir, { arch: 'llama', hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, seed: 3, tokenizer: true });
  return dir;
}

/**
 * A PEFT adapter for `modelDir` whose B matrices are random (not PEFT's zero
 * init), so the adapted model's outputs differ from the base model's.
 */
export async function randomAdapter(modelDir: string, dir: string, seed = 7): Promise<string> {
  const model = await EngineModel.load(modelDir, { method: 'lora' });
  try {
    const targets: Projection[] = ['q_proj', 'v_proj', 'down_proj'];
    model.addAdapter('a', { rank: 4, alpha: 8, targets, seed });
    const random = rng(seed);
    for (let layer = 0; layer < model.config.numLayers; ++layer)
      for (const proj of targets) {
        const b = model.readAdapterTensor('a', layer, proj, 'B');
        for (let i = 0; i < b.length; ++i) b[i] = (random() - 0.5) * 2;
        model.writeAdapterTensor('a', layer, proj, 'B', b);
      }
    await savePeftAdapter(model, 'a', dir, { baseModel: modelDir });
  } finally {
    model.dispose();
  }
  return dir;
}

/** A small chat JSONL dataset: `n` short conversations, one per line. */
export async function chatData(file: string, n = 12): Promise<string> {
  const lines: string[] = [];
  for (let i = 0; i < n; ++i)
    lines.push(
      JSON.stringify({
        messages: [
          { role: 'user', content: `What is ${i} plus ${i}?` },
          { role: 'assistant', content: `${i + i}.` },
        ],
      }),
    );
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, lines.join('\n') + '\n');
  return file;
}

/** Parses JSON lines; fails with the offending line when one does not parse. */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new Error(`not a JSON line: ${l}`);
      }
    });
}
