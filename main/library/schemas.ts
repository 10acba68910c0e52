// Shapes of what goes into and comes out of the shelf, as zod schemas: the
// JSON columns (checked on every write and every read, so a damaged value is
// reported, never passed on) and the caller's inputs.
import { inspect } from 'node:util';
import { z } from 'zod';
import { PROJECTIONS } from '../../engine/api.ts';
import { MEMORY_CATEGORIES, type MemoryCategory } from '../../engine/native/binding.ts';
import type { TrainConfig } from '../../engine/train/types.ts';
import { LibraryError } from './errors.ts';

const count = z.number().int().nonnegative();
const finite = z.number().refine(Number.isFinite, 'must be a finite number');

export const ProjectionListSchema = z.array(z.enum(PROJECTIONS)).min(1);

export const AdapterNameSchema = z.string().trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters');
export const TagSchema = z.string().trim().min(1, 'must not be empty').max(64, 'must be at most 64 characters');
export const TagListSchema = z.array(TagSchema).max(100, 'at most 100 tags');
export const NotesSchema = z.string().max(100_000, 'must be at most 100000 characters');
export const MethodSchema = z.enum(['lora', 'qlora']);

// What inspectData reports about a dataset (engine/data/inspect.ts); every
// field is optional so a partial report (records counted, not tokenized) fits,
// and unknown fields are kept.
export const DatasetStatsSchema = z.looseObject({
  records: count.optional(),
  badRecords: count.optional(),
  examples: count.optional(),
  tokens: z.looseObject({ total: count, trained: count }).optional(),
  length: z.looseObject({ min: finite, mean: finite, max: finite }).optional(),
  truncated: count.optional(),
  dropped: count.optional(),
  duplicates: count.optional(),
});
export type DatasetStats = z.infer<typeof DatasetStatsSchema>;

// A run's full configuration: the engine's TrainConfig (engine/train/types.ts).
// The fields the shelf reads are checked; the rest is kept as given, so a
// configuration written by another engine version still reads back.
export const RunConfigSchema = z.looseObject({
  model: z.string().min(1),
  data: z.string().min(1),
  out: z.string().min(1),
  method: MethodSchema,
  rank: z.number().int().positive(),
  alpha: finite,
  targets: ProjectionListSchema,
  seqLen: z.number().int().positive().optional(),
  batchSize: z.number().int().positive().optional(),
  gradientCheckpointing: z.boolean().optional(),
});
/** TrainConfig fits; a stored configuration read back has at least the checked fields. */
export type RunConfig = Pick<TrainConfig, 'model' | 'data' | 'out' | 'method' | 'rank' | 'alpha' | 'targets'> & Partial<TrainConfig>;

// Memory the engine measured over a run (the engine's MemoryReport): the
// peak of each allocation category and of their total, and the process's
// resident set size, all in bytes.
export const MemoryPeakSchema = z.object({
  peak_bytes: count,
  categories: z.object(Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, count])) as Record<MemoryCategory, typeof count>),
  rss_bytes: count,
});
export type MemoryPeak = z.infer<typeof MemoryPeakSchema>;

export const RunStatusSchema = z.enum(['queued', 'running', 'completed', 'failed', 'stopped']);
export type RunStatus = z.infer<typeof RunStatusSchema>;

// Sampling settings a comparison was generated with (engine/generate/sampler.ts).
export const ComparisonSettingsSchema = z.record(z.string(), z.union([z.number(), z.string(), z.boolean(), z.null()]));
export type ComparisonSettings = z.infer<typeof ComparisonSettingsSchema>;

export const RatingSchema = z.enum(['base', 'adapted', 'tie', 'neither']).nullable();
export type Rating = z.infer<typeof RatingSchema>;

export const ComparisonEntrySchema = z.object({
  prompt: z.string(),
  base: z.string(), // the base model's output
  adapted: z.string(), // the output with the adapter on
  rating: RatingSchema, // which the user preferred; null = not rated
});
export type ComparisonEntry = z.infer<typeof ComparisonEntrySchema>;
export const ComparisonEntriesSchema = z.array(ComparisonEntrySchema).min(1, 'needs at least one prompt');

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'is not valid';
  const where = issue.path.length ? issue.path.map(String).join('.') + ' ' : '';
  return `${where}${issue.message}`;
}

/** Checks a caller's input; the error names `what` (e.g. "the adapter name") and the field. */
export function checkInput<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new LibraryError(`${what} is not valid: ${firstIssue(r.error)} (got ${inspect(value, { depth: 4, breakLength: Infinity }).slice(0, 200)}).`);
  return r.data;
}

/** Serializes a checked value for a *_json column. */
export function toJsonColumn<T extends z.ZodType>(schema: T, value: unknown, what: string): string {
  return JSON.stringify(checkInput(schema, value, what));
}

/** Reads a *_json column; a value that fails its schema is reported as damage in that row. */
export function fromJsonColumn<T extends z.ZodType>(schema: T, text: string, where: { file: string; table: string; column: string; id: unknown }): z.infer<T> {
  let json: unknown;
  let problem: string;
  try {
    json = JSON.parse(text);
    const r = schema.safeParse(json);
    if (r.success) return r.data;
    problem = firstIssue(r.error);
  } catch (e) {
    problem = `not JSON (${(e as Error).message})`;
  }
  throw new LibraryError(
    `The library database ${where.file} holds a damaged value in ${where.table}.${where.column} of row ${String(where.id)}: ${problem}. ` +
      'Quit LoRA Studio, keep a copy of the file, and report this problem.',
    where.file,
  );
}
