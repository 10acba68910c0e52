// The one typed contract between the UI and the backend: every call the
// renderer can make (its input and output as zod schemas), and every event
// channel the backend pushes on. Both transports carry exactly these shapes:
//   browser mode  POST /api/<method> (JSON input) → JSON output, or
//                 { error: ApiError } with a 4xx/5xx status;
//                 WebSocket /events → { channel, payload } messages
//   Electron      window.loraStudio.call(method, input) / .on(channel, listener)
//
// Types + schemas only: this file imports zod and nothing else, so the
// renderer can import it. Units: bytes for sizes, ms since the Unix epoch for
// times, seconds for durations. The engine's wire objects (TrainEvent) keep
// their snake_case fields; everything else is camelCase.
//
// The contract grows additively: new methods, new optional fields. A field is
// never renamed or given a new meaning.
import { z } from 'zod';

// ---- shared pieces -------------------------------------------------------------------

const count = z.number().int().nonnegative();
const bytes = count;
const time = count; // ms since the Unix epoch
const nonEmpty = z.string().min(1, 'must not be empty');
const path = nonEmpty; // an absolute path on the machine running the backend
const empty = z.object({});

export const PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export const ProjectionSchema = z.enum(PROJECTIONS);
export const MEMORY_CATEGORIES = ['base', 'adapters', 'gradients', 'optimizer', 'activations', 'workspace'] as const;
export const MethodSchema = z.enum(['lora', 'qlora']);
export const DATA_FORMATS = ['chat', 'sharegpt', 'alpaca', 'prompt-completion', 'text', 'tokens', 'txt', 'csv'] as const;

/** An error as it crosses the boundary: 'user' (say it, the user can fix it), 'internal' (a bug; logged), 'invalid' (a malformed call). */
export const ApiErrorSchema = z.object({
  kind: z.enum(['user', 'internal', 'invalid']),
  message: z.string(),
  /** For 'invalid': the path of the first bad field, e.g. "config.rank". */
  field: z.string().optional(),
});
export type ApiError = z.infer<typeof ApiErrorSchema>;

const MemoryReportSchema = z.object({
  peak_bytes: bytes,
  categories: z.record(z.string(), bytes),
  rss_bytes: bytes,
});

// ---- system ----------------------------------------------------------------------------

export const DetectedGpuSchema = z.object({
  index: count,
  name: z.string(),
  vendor: z.enum(['nvidia', 'amd', 'intel', 'apple', 'other']),
  totalBytes: bytes,
  freeBytes: bytes.nullable(),
  driver: z.string().nullable(),
  source: z.string(),
});

export const HardwareSchema = z.object({
  ramTotalBytes: bytes,
  ramAvailableBytes: bytes,
  cpuModel: z.string(),
  cpuThreads: count,
  gpus: z.array(DetectedGpuSchema),
  /** Why a source gave nothing, in words. */
  notes: z.array(z.string()),
});

/** A device the estimator can plan for (engine/estimate/device.ts EstimateDevice). */
export const EstimateDeviceSchema = z.object({
  kind: z.enum(['cpu', 'gpu']),
  name: z.string(),
  totalBytes: bytes,
  availableBytes: bytes.nullable(),
  source: z.enum(['this machine', 'catalogue']),
  vendor: z.string().nullable(),
  computeCapability: z.number().nullable(),
  threads: count,
});

/** What this machine can train: its devices, the one used by default, disk, and plain-words notes. */
export const CapacitySchema = z.object({
  devices: z.array(EstimateDeviceSchema),
  /** Index into devices of the one training runs on by default. */
  preferred: count,
  diskFreeBytes: bytes.nullable(),
  /** E.g. "fits models up to about 3B parameters with QLoRA". */
  summary: z.array(z.string()),
});

export const AppDataSchema = z.object({
  /** The app data folder: library database, adapters, runs, logs. */
  dir: path,
  libraryFile: path,
  diskFreeBytes: bytes.nullable(),
});

// ---- models ------------------------------------------------------------------------------

export const ModelEntrySchema = z.object({
  /** Stable id for the UI (the absolute folder path). */
  id: nonEmpty,
  name: z.string(),
  path: path,
  source: z.enum(['folder', 'hf-cache', 'download']),
  /** Hugging Face repo id when known, e.g. "HuggingFaceTB/SmolLM2-135M". */
  repo: z.string().nullable(),
  arch: z.string().nullable(),
  parameters: count.nullable(),
  sizeBytes: bytes,
  /** Whether the engine can train it; when not, problem says why and what to do. */
  usable: z.boolean(),
  problem: z.string().nullable(),
});
export type ModelEntry = z.infer<typeof ModelEntrySchema>;

export const SuggestedModelSchema = z.object({
  repo: nonEmpty,
  name: z.string(),
  parameters: count,
  downloadBytes: bytes,
  /** Why it is suggested, in words. */
  why: z.string(),
  /** Whether it fits this machine for LoRA / QLoRA at default settings; null when unknown. */
  fitsLora: z.boolean().nullable(),
  fitsQlora: z.boolean().nullable(),
  /** Already on disk (folder or Hugging Face cache). */
  local: z.boolean(),
  licence: z.string().optional(),
  /** The hub asks to accept the licence (and a token) before downloading. */
  gated: z.boolean().optional(),
  /** Why it does not fit here, when it does not. */
  reason: z.string().nullable().optional(),
});

export const DownloadStatusSchema = z.enum(['queued', 'downloading', 'verifying', 'done', 'failed', 'cancelled']);

export const DownloadSchema = z.object({
  downloadId: nonEmpty,
  repo: nonEmpty,
  revision: z.string(),
  status: DownloadStatusSchema,
  /** File being fetched now, when any. */
  file: z.string().nullable(),
  bytesDone: bytes,
  bytesTotal: bytes.nullable(),
  /** Average network speed since the download started (bytes per second); null before the first progress. */
  bytesPerSecond: z.number().min(0).nullable(),
  /** Where the model is (once done). */
  path: path.nullable(),
  error: z.string().nullable(),
});
export type Download = z.infer<typeof DownloadSchema>;

export const StartDownloadInputSchema = z.object({
  repo: nonEmpty,
  revision: nonEmpty.optional(),
  /**
   * Hugging Face access token for gated or private repos, sent to the hub for
   * this download only: never logged, never stored, never in a Download.
   */
  token: z.string().trim().min(1).max(1000).optional(),
});

// ---- data ---------------------------------------------------------------------------------

export const InspectDataInputSchema = z.object({
  /** Base model folder: its tokenizer and chat template shape the examples. */
  model: path,
  data: path,
  format: z.enum(['auto', ...DATA_FORMATS]).optional(),
  columns: z.string().min(1).nullable().optional(),
  lossOn: z.enum(['assistant', 'all', 'last-assistant']).optional(),
  maxSeqLen: z.number().int().min(2).max(1 << 20).optional(),
  truncation: z.enum(['truncate', 'drop']).optional(),
  skipBadRecords: z.boolean().optional(),
});

/** engine/data/inspect.ts DataReport. */
const RenderedExampleSchema = z.object({
  line: count,
  tokens: count,
  spans: z.array(z.object({ text: z.string(), trained: z.boolean() })),
  rendered: z.string(),
});

export const DataReportSchema = z.object({
  file: z.string(),
  format: z.string(),
  container: z.string(),
  records: count,
  badRecords: count,
  problems: z.array(z.object({ file: z.string(), line: count, message: z.string() })),
  examples: count,
  maxSeqLen: count,
  tokens: z.object({ total: count, trained: count }),
  length: z.object({ min: z.number(), mean: z.number(), p50: z.number(), p90: z.number(), p99: z.number(), max: z.number() }),
  truncated: count,
  dropped: count,
  noTrainedTokens: count,
  duplicates: count,
  chatTemplate: z.enum(['model', 'fallback']),
  firstExample: RenderedExampleSchema.nullable(),
  /** The first few examples. */
  renderedExamples: z.array(RenderedExampleSchema).optional(),
});
export type DataReport = z.infer<typeof DataReportSchema>;

// ---- estimate -------------------------------------------------------------------------------

export const RunChoicesSchema = z.object({
  method: MethodSchema,
  rank: z.number().int().min(1).max(4096),
  targets: z.array(ProjectionSchema).min(1),
  seqLen: z.number().int().min(2).max(1 << 20),
  batch: z.number().int().min(1).max(4096),
  checkpointing: z.boolean(),
});

/** A model (folder path or preset name such as "llama-3.1-8b") and a device ("cpu", "gpu", "gpu:1", or a catalogue card name; default: this machine's preferred). */
const EstimateTargetSchema = z.object({ model: nonEmpty, device: nonEmpty.optional() });

export const EstimateInputSchema = EstimateTargetSchema.extend({ choices: RunChoicesSchema });
export const FitInputSchema = EstimateTargetSchema.extend({ fixed: RunChoicesSchema.partial().optional() });

/** engine/estimate/estimate.ts MemoryEstimate; the native plan is left out. */
export const MemoryEstimateSchema = z.object({
  model: z.object({ name: z.string(), source: z.enum(['preset', 'folder']), arch: z.string() }),
  choices: RunChoicesSchema,
  device: EstimateDeviceSchema,
  categories: z.record(z.string(), bytes),
  categoryPeaks: z.record(z.string(), bytes),
  phases: z.record(z.string(), bytes),
  peakPhase: z.string(),
  engineBytes: bytes,
  overheads: z.array(z.object({ name: z.string(), bytes, source: z.string() })),
  overheadBytes: bytes,
  totalBytes: bytes,
  capacityBytes: bytes,
  usableBytes: bytes,
  fits: z.boolean(),
  marginBytes: z.number().int(),
  /** The estimate corrected by earlier runs measured on this machine (engine/estimate/correction.ts); absent for a catalogue card or without such runs. */
  correction: z
    .object({
      runs: count, // comparable runs (same method) it is based on
      categories: z.record(z.string(), bytes),
      engineBytes: bytes,
      overheadBytes: bytes,
      totalBytes: bytes,
      fits: z.boolean(),
      marginBytes: z.number().int(),
      /** Per category (and 'total', 'process baseline'): the ratio applied, in [1, 2], and how many runs it is based on. */
      factors: z.record(z.string(), z.object({ ratio: z.number(), runs: count })),
      /** E.g. "corrected by 3 earlier LoRA runs on this machine: activations +4%". */
      sentence: z.string(),
    })
    .optional(),
});
export type MemoryEstimate = z.infer<typeof MemoryEstimateSchema>;

export const FitResultSchema = z.object({
  found: z.boolean(),
  choices: RunChoicesSchema.nullable(),
  estimate: MemoryEstimateSchema.nullable(),
  budgetBytes: bytes,
  safetyMargin: z.number(),
  changes: z.array(z.string()),
  suggestions: z.array(z.string()),
});

// ---- jobs -----------------------------------------------------------------------------------

/**
 * A training run's settings (the engine's TrainConfig, engine/train/types.ts).
 * model, data and out are required except out (default: a new folder under the
 * app data's runs/); every other field takes the engine's default. The engine
 * checks the values again and names the setting in its error.
 */
export const TrainConfigInputSchema = z.looseObject({
  model: path,
  data: path,
  out: path.optional(),
  method: MethodSchema.optional(),
  rank: z.number().int().min(1).max(4096).optional(),
  alpha: z.number().positive().optional(),
  dropout: z.number().min(0).max(0.99).optional(),
  rslora: z.boolean().optional(),
  targets: z.array(ProjectionSchema).min(1).optional(),
  initAdapter: path.nullable().optional(),
  format: z.enum(['auto', ...DATA_FORMATS]).optional(),
  columns: z.string().min(1).nullable().optional(),
  lossOn: z.enum(['assistant', 'all', 'last-assistant']).optional(),
  seqLen: z.number().int().min(2).optional(),
  truncation: z.enum(['truncate', 'drop']).optional(),
  skipBadRecords: z.boolean().optional(),
  batching: z.enum(['packed', 'padding-free', 'padded']).optional(),
  shuffle: z.boolean().optional(),
  lr: z.number().positive().optional(),
  schedule: z.enum(['constant', 'linear', 'cosine']).optional(),
  warmupSteps: count.optional(),
  steps: z.number().int().min(1).nullable().optional(),
  epochs: z.number().int().min(1).nullable().optional(),
  batchSize: z.number().int().min(1).optional(),
  gradAccum: z.number().int().min(1).optional(),
  weightDecay: z.number().min(0).optional(),
  seed: z.number().int().min(0).max(0xffffffff).optional(),
  gradientCheckpointing: z.boolean().optional(),
  evalSplit: z.number().min(0).max(0.5).optional(),
  evalData: path.nullable().optional(),
  evalEvery: count.optional(),
  earlyStoppingPatience: count.optional(),
  saveEvery: count.optional(),
  keepCheckpoints: count.optional(),
  samplePrompts: z.array(nonEmpty).optional(),
  sampleMaxTokens: z.number().int().min(1).optional(),
});
export type TrainConfigInput = z.infer<typeof TrainConfigInputSchema>;

export const StartTrainingInputSchema = z.object({
  /** The run's name on the shelf (default: the data file's name and the time). */
  name: z.string().trim().min(1).max(200).optional(),
  config: TrainConfigInputSchema,
  /** Put the final adapter on the shelf when the run completes (default true). */
  addToShelf: z.boolean().optional(),
});

export const JobStatusSchema = z.enum(['queued', 'running', 'pausing', 'paused', 'stopping', 'completed', 'failed', 'cancelled']);
export type JobStatus = z.infer<typeof JobStatusSchema>;

export const JobSchema = z.object({
  id: nonEmpty,
  kind: z.enum(['train', 'compare']),
  status: JobStatusSchema,
  name: z.string(),
  /** The library's run (training jobs). */
  runId: count.nullable(),
  /** The adapter put on the shelf when the run completed. */
  adapterId: z.string().nullable(),
  step: count,
  totalSteps: count.nullable(),
  createdAt: time,
  startedAt: time.nullable(),
  finishedAt: time.nullable(),
  /** Why it failed (a crash, out of memory, bad data), in words; what to do. */
  error: z.object({ kind: z.enum(['user', 'internal', 'crash']), message: z.string() }).nullable(),
  /** Last checkpoint written: a failed or paused run resumes from here. */
  lastCheckpoint: z.string().nullable(),
  /** After an out-of-memory failure: smaller settings for a new run (jobs.acceptOomOffer starts it). */
  oomOffer: z
    .object({
      change: z.enum(['seqLen', 'batchSize', 'method', 'rank']),
      config: z.looseObject({ model: z.string(), data: z.string() }),
      explanation: z.string(),
    })
    .nullable()
    .optional(),
});
export type Job = z.infer<typeof JobSchema>;

export const LossSeriesSchema = z.object({
  train: z.array(z.object({ step: count, loss: z.number(), lr: z.number().nullable(), tokensPerSecond: z.number().nullable() })),
  eval: z.array(z.object({ step: count, loss: z.number() })),
});

export const JobDetailSchema = z.object({
  job: JobSchema,
  series: LossSeriesSchema,
  /** The newest 'sample' events (outputs generated at checkpoints). */
  samples: z.array(z.object({ step: count, prompt: z.string(), output: z.string() })),
});

const JobIdInputSchema = z.object({ jobId: nonEmpty });

export const SamplingInputSchema = z.object({
  greedy: z.boolean().optional(),
  temperature: z.number().min(0).max(100).optional(),
  topK: count.optional(),
  topP: z.number().gt(0).max(1).optional(),
  repetitionPenalty: z.number().positive().optional(),
  seed: z.number().int().min(0).max(0xffffffff).optional(),
  maxTokens: z.number().int().min(1).max(8192).optional(),
});

export const StartComparisonInputSchema = z.object({
  /** Base model folder. */
  model: path,
  /** Up to three shelf adapters (ids), each generated beside the base with the same seed. */
  adapterIds: z.array(nonEmpty).min(1).max(3),
  prompt: nonEmpty,
  sampling: SamplingInputSchema.optional(),
});

// ---- shelf ----------------------------------------------------------------------------------

export const AdapterSchema = z.object({
  id: nonEmpty,
  name: z.string(),
  folder: z.string(),
  state: z.enum(['ready', 'trashed']),
  sizeBytes: bytes,
  rank: count,
  alpha: z.number(),
  rslora: z.boolean(),
  targets: z.array(ProjectionSchema),
  method: MethodSchema,
  baseFingerprint: z.string().nullable(),
  baseModelName: z.string().nullable(),
  datasetId: count.nullable(),
  /** The dataset's name, or the data file of the run that trained it. */
  datasetName: z.string().nullable().optional(),
  runId: count.nullable(),
  evalLoss: z.number().nullable(),
  tags: z.array(z.string()),
  notes: z.string(),
  source: z.enum(['imported', 'trained']),
  sourcePath: z.string().nullable(),
  createdAt: time,
  trashedAt: time.nullable(),
});
export type Adapter = z.infer<typeof AdapterSchema>;

export const RunSchema = z.object({
  id: count,
  name: z.string(),
  baseModelId: count.nullable(),
  datasetId: count.nullable(),
  config: z.looseObject({ model: z.string(), data: z.string(), out: z.string(), method: MethodSchema, rank: count, alpha: z.number() }),
  machine: z.string(),
  status: z.enum(['queued', 'running', 'completed', 'failed', 'stopped']),
  failureReason: z.string().nullable(),
  outDir: z.string(),
  lastCheckpoint: z.string().nullable(),
  step: count,
  totalSteps: count.nullable(),
  trainLoss: z.number().nullable(),
  evalLoss: z.number().nullable(),
  memoryPeak: MemoryReportSchema.nullable(),
  createdAt: time,
  startedAt: time.nullable(),
  finishedAt: time.nullable(),
  updatedAt: time,
});
export type Run = z.infer<typeof RunSchema>;

export const RatingSchema = z.enum(['base', 'adapted', 'tie', 'neither']).nullable();

export const ComparisonSchema = z.object({
  id: count,
  title: z.string(),
  baseFingerprint: z.string().nullable(),
  adapterId: z.string().nullable(),
  settings: z.record(z.string(), z.union([z.number(), z.string(), z.boolean(), z.null()])),
  entries: z.array(z.object({ prompt: z.string(), base: z.string(), adapted: z.string(), rating: RatingSchema })),
  createdAt: time,
});
export type Comparison = z.infer<typeof ComparisonSchema>;

const TagSchema = z.string().trim().min(1, 'must not be empty').max(64);
const AdapterIdInputSchema = z.object({ id: nonEmpty });

export const AdapterQuerySchema = z.object({
  state: z.enum(['ready', 'trashed']).optional(),
  baseFingerprint: z.string().optional(),
  method: MethodSchema.optional(),
  runId: count.optional(),
  tags: z.array(TagSchema).max(100).optional(),
  search: z.string().max(1000).optional(),
  sort: z.enum(['name', 'created', 'evalLoss', 'size', 'rank']).optional(),
  direction: z.enum(['asc', 'desc']).optional(),
});

export const AdapterDetailSchema = z.object({
  adapter: AdapterSchema,
  run: RunSchema.nullable(),
  series: LossSeriesSchema.nullable(),
  comparisons: z.array(ComparisonSchema),
});

export const ImportAdapterInputSchema = z.object({
  folder: path,
  name: z.string().trim().min(1).max(200).optional(),
  /** A base model folder to check the adapter against (its shapes must match). */
  baseModel: path.optional(),
  method: MethodSchema.optional(),
  tags: z.array(TagSchema).max(100).optional(),
  notes: z.string().max(100_000).optional(),
});

export const ExportAdapterInputSchema = z.object({
  id: nonEmpty,
  /** 'peft': the adapter folder as is; 'merged': the base model with the adapter folded in. */
  format: z.enum(['peft', 'merged']),
  /** The new folder to write (must not exist yet). */
  to: path,
  /** The base model folder ('merged' only). */
  baseModel: path.optional(),
});

export const ExportResultSchema = z.object({ path: path, bytes: bytes });

export const AdapterProblemSchema = z.object({
  id: z.string(),
  name: z.string(),
  folder: z.string(),
  problem: z.enum(['missing', 'damaged']),
  message: z.string(),
});

// ---- comparisons ------------------------------------------------------------------------------

export const SaveComparisonInputSchema = z.object({
  title: z.string().max(200).optional(),
  baseFingerprint: z.string().nullable().optional(),
  adapterId: z.string().nullable().optional(),
  settings: z.record(z.string(), z.union([z.number(), z.string(), z.boolean(), z.null()])).optional(),
  entries: z.array(z.object({ prompt: z.string(), base: z.string(), adapted: z.string(), rating: RatingSchema.optional() })).min(1),
});

export const RateComparisonInputSchema = z.object({ id: count, index: count, rating: RatingSchema });

// ---- the methods ------------------------------------------------------------------------------

const method = <I extends z.ZodType, O extends z.ZodType>(input: I, output: O) => ({ input, output });

/** Every call: name → { input, output }. Names are "<group>.<action>". */
export const API = {
  // system
  'system.hardware': method(empty, HardwareSchema),
  'system.capacity': method(empty, CapacitySchema),
  'system.appData': method(empty, AppDataSchema),

  // models
  'models.list': method(empty, z.array(ModelEntrySchema)),
  'models.addFolder': method(z.object({ path }), ModelEntrySchema),
  'models.suggested': method(empty, z.array(SuggestedModelSchema)),
  'models.startDownload': method(StartDownloadInputSchema, DownloadSchema),
  'models.cancelDownload': method(z.object({ downloadId: nonEmpty }), DownloadSchema),
  'models.downloads': method(empty, z.array(DownloadSchema)),

  // data
  'data.inspect': method(InspectDataInputSchema, DataReportSchema),

  // estimate
  'estimate.estimate': method(EstimateInputSchema, MemoryEstimateSchema),
  'estimate.fit': method(FitInputSchema, FitResultSchema),

  // jobs
  'jobs.startTraining': method(StartTrainingInputSchema, JobSchema),
  'jobs.pause': method(JobIdInputSchema, JobSchema),
  'jobs.resume': method(JobIdInputSchema, JobSchema),
  'jobs.cancel': method(JobIdInputSchema, JobSchema),
  'jobs.list': method(empty, z.array(JobSchema)),
  'jobs.get': method(JobIdInputSchema, JobDetailSchema),
  'jobs.startComparison': method(StartComparisonInputSchema, JobSchema),
  'jobs.acceptOomOffer': method(JobIdInputSchema, JobSchema),

  // shelf
  'shelf.list': method(AdapterQuerySchema, z.array(AdapterSchema)),
  'shelf.tags': method(empty, z.array(z.object({ tag: z.string(), count: count }))),
  'shelf.get': method(AdapterIdInputSchema, AdapterDetailSchema),
  'shelf.rename': method(z.object({ id: nonEmpty, name: z.string().trim().min(1).max(200) }), AdapterSchema),
  'shelf.setTags': method(z.object({ id: nonEmpty, tags: z.array(TagSchema).max(100) }), AdapterSchema),
  'shelf.setNotes': method(z.object({ id: nonEmpty, notes: z.string().max(100_000) }), AdapterSchema),
  'shelf.delete': method(AdapterIdInputSchema, AdapterSchema),
  'shelf.restore': method(AdapterIdInputSchema, AdapterSchema),
  'shelf.emptyTrash': method(empty, z.object({ adapters: count, freedBytes: bytes })),
  'shelf.import': method(ImportAdapterInputSchema, AdapterSchema),
  'shelf.export': method(ExportAdapterInputSchema, ExportResultSchema),
  'shelf.verify': method(empty, z.object({ checked: count, problems: z.array(AdapterProblemSchema) })),

  // comparisons
  'comparisons.list': method(z.object({ adapterId: nonEmpty.optional() }), z.array(ComparisonSchema)),
  'comparisons.save': method(SaveComparisonInputSchema, ComparisonSchema),
  'comparisons.rate': method(RateComparisonInputSchema, ComparisonSchema),
} as const;

export type ApiMethod = keyof typeof API;
export const API_METHODS = Object.keys(API) as ApiMethod[];
export type ApiInput<M extends ApiMethod> = z.input<(typeof API)[M]['input']>;
export type ApiOutput<M extends ApiMethod> = z.infer<(typeof API)[M]['output']>;
/** What a handler receives: the input after the schema's checks and defaults. */
export type ApiParsedInput<M extends ApiMethod> = z.infer<(typeof API)[M]['input']>;
export type ApiHandlers = { [M in ApiMethod]: (input: ApiParsedInput<M>) => Promise<ApiOutput<M>> | ApiOutput<M> };

// ---- events -------------------------------------------------------------------------------------

/** The engine's TrainEvent (engine/train/types.ts), snake_case as the engine writes it. */
export const TrainEventSchema = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('start'), time: z.string(), total_steps: count, train_examples: count, eval_examples: count, resumed_from_step: count.nullable() }),
  z.looseObject({
    type: z.literal('step'), step: count, total_steps: count, epoch: z.number(), loss: z.number(), lr: z.number(), grad_norm: z.number(),
    trained_tokens: count, tokens_per_second: z.number(), elapsed_seconds: z.number(), eta_seconds: z.number(), memory: MemoryReportSchema,
  }),
  z.looseObject({ type: z.literal('eval'), step: count, eval_loss: z.number(), perplexity: z.number(), tokens: count, best: z.boolean() }),
  z.looseObject({ type: z.literal('checkpoint'), step: count, path: z.string() }),
  z.looseObject({ type: z.literal('sample'), step: count, prompt: z.string(), output: z.string() }),
  z.looseObject({
    type: z.literal('done'), reason: z.enum(['completed', 'early-stopped', 'stopped']), step: count, adapter_path: z.string(),
    checkpoint_path: z.string(), train_loss: z.number().nullable(), eval_loss: z.number().nullable(), elapsed_seconds: z.number(),
  }),
  z.looseObject({ type: z.literal('error'), kind: z.enum(['user', 'internal']), message: z.string(), log_path: z.string().nullable() }),
]);
export type TrainEventPayload = z.infer<typeof TrainEventSchema>;

/** Channel 'job': a training event of a job, or a change of its status. */
export const JobEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('train'), jobId: nonEmpty, event: TrainEventSchema }),
  z.object({ type: z.literal('status'), jobId: nonEmpty, job: JobSchema }),
]);

/** Channel 'compare': tokens of a comparison as they are generated. side: 'base' or an adapter id. */
export const CompareEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('token'), jobId: nonEmpty, side: nonEmpty, text: z.string() }),
  z.object({
    type: z.literal('done'), jobId: nonEmpty, side: nonEmpty,
    finishReason: z.string(), generatedTokens: count.optional(), seconds: z.number().optional(),
  }),
  z.object({ type: z.literal('error'), jobId: nonEmpty, kind: z.enum(['user', 'internal', 'crash']), message: z.string() }),
]);

export const EVENTS = {
  job: JobEventSchema,
  compare: CompareEventSchema,
  /** Channel 'download': a download's state, sent on every change and at most a few times a second while bytes arrive. */
  download: DownloadSchema,
} as const;

export type EventChannel = keyof typeof EVENTS;
export const EVENT_CHANNELS = Object.keys(EVENTS) as EventChannel[];
export type EventPayload<C extends EventChannel> = z.infer<(typeof EVENTS)[C]>;
/** One message on the browser-mode WebSocket. */
export type EventMessage = { [C in EventChannel]: { channel: C; payload: EventPayload<C> } }[EventChannel];
