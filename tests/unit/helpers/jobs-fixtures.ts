// Shared by the job tests: a tiny chat model, the demo's capitals data set, an
// app data folder with its library, and a JobManager over real engine child
// processes, plus waiting on job events.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTinyModel } from '../../../engine/model/tiny.ts';
import type { TrainConfig } from '../../../engine/train/types.ts';
import { nodeChildLauncher, type ChildEngineProcess } from '../../../main/jobs/child-launcher.ts';
import { JobManager, type Job, type JobEvent } from '../../../main/jobs/manager.ts';
import { openLibrary, type Library } from '../../../main/library/library.ts';
import { tempDir } from './engine-fixtures.ts';

export const CAPITALS = fileURLToPath(new URL('../../../assets/demo/capitals.jsonl', import.meta.url));

export interface JobsFixture {
  dir: string;
  model: string;
  library: Library;
  manager: JobManager;
  /** Every engine process the manager started, in order. */
  processes: ChildEngineProcess[];
  events: JobEvent[];
  /** Errors of the job layer itself (none expected). */
  internalErrors: unknown[];
  close(): Promise<void>;
}

export async function jobsFixture(): Promise<JobsFixture> {
  const dir = await tempDir('lora-studio-jobs-');
  const model = path.join(dir, 'model');
  await createTinyModel(model, { arch: 'llama', tokenizer: true, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 2, numKvHeads: 1, seed: 5, initStd: 0.25 });
  const library = openLibrary(path.join(dir, 'appdata'));
  const processes: ChildEngineProcess[] = [];
  const launch = nodeChildLauncher({ onStderr: () => {} });
  const internalErrors: unknown[] = [];
  const manager = new JobManager({
    library,
    launcher: () => {
      const p = launch();
      processes.push(p);
      return p;
    },
    runsDir: path.join(dir, 'appdata', 'runs'),
    machine: 'test machine',
    onInternalError: (e) => internalErrors.push(e),
  });
  const events: JobEvent[] = [];
  manager.on((e) => events.push(e));
  return {
    dir, model, library, manager, processes, events, internalErrors,
    close: async () => {
      await manager.shutdown();
      library.close();
    },
  };
}

/** Small, fast run settings on the capitals data. */
export function quickConfig(f: JobsFixture, over: Partial<TrainConfig> = {}): Partial<TrainConfig> & { model: string; data: string } {
  return { model: f.model, data: CAPITALS, rank: 2, alpha: 4, seqLen: 64, batchSize: 2, steps: 4, lr: 1e-2, evalSplit: 0.05, evalEvery: 0, ...over };
}

/** Resolves with the first job event that `match` accepts (events already seen count); rejects after `ms`. */
export function waitFor(f: JobsFixture, match: (e: JobEvent) => boolean, ms = 120_000): Promise<JobEvent> {
  const seen = f.events.find(match);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching job event within ${ms} ms; last: ${JSON.stringify(f.events.at(-1))}`));
    }, ms);
    const off = f.manager.on((e) => {
      if (!match(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

const ENDED = new Set(['completed', 'failed', 'paused', 'cancelled']);

/** Waits until the job reaches an end status (completed, failed, paused, cancelled) and returns it. */
export async function waitForEnd(f: JobsFixture, jobId: string, after = 0): Promise<Job> {
  const e = await waitFor(f, (e) => e.type === 'status' && e.jobId === jobId && ENDED.has(e.job.status) && f.events.indexOf(e) >= after);
  return (e as Extract<JobEvent, { type: 'status' }>).job;
}
