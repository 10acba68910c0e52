// The composition root: builds the backend's services for one app data folder
// and binds them to the contract's handlers. Electron's main process and
// browser mode (main/server) both call createServices; only the engine
// launcher differs (a utility process or a Node child process).
//
//   appDataDir/
//     library.sqlite, adapters/, trash/, ...   the shelf (main/library)
//     runs/<job id>/                           training runs without an out folder of their own
//     models/                                  hub downloads
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../engine/model/errors.ts';
import type { ApiHandlers } from './api/contract.ts';
import { createDispatch, type Dispatch, type DispatchOptions } from './api/dispatch.ts';
import { ApiEvents } from './api/events.ts';
import { engineHandlers } from './api/handlers/engine.ts';
import { modelHandlers } from './api/handlers/models.ts';
import { shelfHandlers } from './api/handlers/shelf.ts';
import type { EngineLauncher } from './jobs/engine-process.ts';
import { JobManager, type JobEvent, type StartTraining } from './jobs/manager.ts';
import { openLibrary, type Library } from './library/library.ts';
import { diskSpace, getSystemInfo, type SystemInfo } from './system/system.ts';

export interface ServicesOptions {
  appDataDir: string;
  launcher: EngineLauncher;
  dispatch?: DispatchOptions;
  /** Hugging Face cache folder to scan (default: HF_HUB_CACHE / HF_HOME / ~/.cache/huggingface/hub). */
  hfCacheDir?: string;
  /** Hub endpoint for downloads (default https://huggingface.co). */
  hubEndpoint?: string;
}

export interface Services {
  library: Library;
  jobs: JobManager;
  events: ApiEvents;
  handlers: ApiHandlers;
  dispatch: Dispatch;
  /** Stops every engine process and closes the library. */
  close(): void;
}

export function createServices(opts: ServicesOptions): Services {
  const appDataDir = path.resolve(opts.appDataDir);
  const runsDir = path.join(appDataDir, 'runs');
  mkdirSync(runsDir, { recursive: true });
  const library = openLibrary(appDataDir);
  const events = new ApiEvents();
  const jobs = new JobManager({ library, launcher: opts.launcher, runsDir });

  // A comparison's sides are 'base' or an index into its adapters; the UI knows them by adapter id.
  const compareSides = new Map<string, string[]>();
  const sideName = (jobId: string, side: 'base' | number) => (side === 'base' ? 'base' : compareSides.get(jobId)?.[side] ?? String(side));
  jobs.on((e: JobEvent) => {
    if (e.type === 'train') events.emit('job', { type: 'train', jobId: e.jobId, event: e.event });
    else if (e.type === 'status') events.emit('job', { type: 'status', jobId: e.jobId, job: e.job });
    else if (e.event.type === 'token') events.emit('compare', { type: 'token', jobId: e.jobId, side: sideName(e.jobId, e.event.side), text: e.event.text });
    else events.emit('compare', { type: 'done', jobId: e.jobId, side: sideName(e.jobId, e.event.side), finishReason: e.event.finishReason });
  });

  // Hardware detection runs tools with timeouts (nvidia-smi): once, then kept; a failure is retried next time.
  let system: Promise<SystemInfo> | null = null;
  const systemInfo = () => (system ??= getSystemInfo({ appDataDir }).catch((err: unknown) => {
    system = null;
    throw err;
  }));

  const handlers: ApiHandlers = {
    // ---- system
    'system.hardware': async () => {
      const info = await systemInfo();
      return { ramTotalBytes: info.ram.totalBytes, ramAvailableBytes: info.ram.availableBytes, cpuModel: info.cpu.model, cpuThreads: info.cpu.threads, gpus: info.gpus, notes: info.notes };
    },
    'system.capacity': async () => {
      const info = await systemInfo();
      return { devices: info.devices, preferred: info.preferred, diskFreeBytes: (await diskSpace(appDataDir))?.freeBytes ?? null, summary: info.summary };
    },
    'system.appData': async () => ({ dir: appDataDir, libraryFile: library.file, diskFreeBytes: (await diskSpace(appDataDir))?.freeBytes ?? null }),

    // ---- models
    ...modelHandlers({ library, events, appDataDir, hfCacheDir: opts.hfCacheDir, hubEndpoint: opts.hubEndpoint, system: systemInfo }),

    // ---- data, estimate
    ...engineHandlers({ measuredRuns: () => library.measuredPeaks(jobs.machine) }),

    // ---- jobs
    'jobs.startTraining': ({ name, config, addToShelf }) => {
      const start: StartTraining = { config: config as StartTraining['config'] };
      if (name !== undefined) start.name = name;
      if (addToShelf !== undefined) start.addToShelf = addToShelf;
      return jobs.startTraining(start);
    },
    'jobs.pause': ({ jobId }) => jobs.pause(jobId),
    'jobs.resume': ({ jobId }) => jobs.resume(jobId),
    'jobs.cancel': ({ jobId }) => jobs.cancel(jobId),
    'jobs.acceptOomOffer': ({ jobId }) => jobs.acceptOomOffer(jobId),
    'jobs.list': () => jobs.list(),
    'jobs.get': ({ jobId }) => {
      const job = jobs.get(jobId);
      return {
        job,
        series: job.runId !== null ? library.runs.series(job.runId) : { train: [], eval: [] },
        samples: job.kind === 'train' ? jobs.samples(jobId) : [],
      };
    },
    'jobs.startComparison': ({ model, adapterIds, prompt, sampling = {} }) => {
      const adapters = adapterIds.map((id) => library.adapters.get(id));
      const trashed = adapters.find((a) => a.state !== 'ready');
      if (trashed) throw new UserError(`Adapter "${trashed.name}" is in the trash; restore it to compare it.`);
      const { seed = 0, maxTokens = 128, ...rest } = sampling;
      const job = jobs.startComparison({
        model,
        method: adapters.some((a) => a.method === 'qlora') ? 'qlora' : 'lora',
        adapters: adapters.map((a) => library.adapterFolder(a)),
        prompt,
        sampling: rest as StartComparisonSampling,
        seed,
        maxTokens,
      }, `Comparison: ${adapters.map((a) => a.name).join(', ')}`);
      compareSides.set(job.id, adapterIds);
      return job;
    },

    // ---- shelf, comparisons
    ...shelfHandlers(library),
  };

  return {
    library,
    jobs,
    events,
    handlers,
    dispatch: createDispatch(handlers, opts.dispatch),
    close() {
      jobs.shutdown();
      library.close();
    },
  };
}

type StartComparisonSampling = Parameters<JobManager['startComparison']>[0]['sampling'];
