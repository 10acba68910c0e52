// Checkpoints of a training run, and the final adapter folder.
//
//   out/checkpoints/step-<NNNNNN>/
//     adapter_config.json, adapter_model.safetensors   the adapter (PEFT layout, F32)
//     optimizer.safetensors     AdamW moments: layers.<l>.<proj>.{adamMA,adamVA,adamMB,adamVB}
//                               (F32, shaped like A [r, in] / B [out, r]); metadata
//                               optimizer_steps = the AdamW step count (bias correction)
//     trainer_state.json        written last: step, data position, RNG keys, loss and
//                               eval history, elapsed time, the full TrainConfig, and
//                               the size and SHA-256 of each other file
//   out/adapter/                the newest adapter, for use (PEFT layout)
//   out/run.json                a summary of the run
//
// A checkpoint is written into a temporary sibling folder (".tmp-…"), every
// file fsynced, then renamed into place and the parent folder fsynced: a kill
// at any instant leaves the old checkpoint or the new one whole, never a
// half-written "step-…" folder. Pruning renames a folder to ".del-…" before
// deleting it. Leftover dot-folders are never read as checkpoints and are
// removed when a run starts. A checkpoint whose files do not match the sizes
// and checksums in its trainer_state.json is refused, naming the file.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { EngineModel, Projection } from '../api.ts';
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, savePeftAdapter } from '../adapters/peft.ts';
import { syncFolder, writeFileAtomic } from '../model/atomic.ts';
import { UserError } from '../model/errors.ts';
import { readSafetensorsHeader, writeSafetensors } from '../model/safetensors.ts';
import type { TrainConfig } from './types.ts';

export const ADAPTER_NAME = 'default';
export const STATE_FILE = 'trainer_state.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
const STATE_FORMAT = 'lora-studio-trainer-state';
const MOMENTS = ['adamMA', 'adamVA', 'adamMB', 'adamVB'] as const;

/** Everything besides the weights that a resumed run needs to continue exactly. */
export interface TrainerState {
  format: typeof STATE_FORMAT;
  version: 1;
  /** Optimizer steps done. */
  step: number;
  total_steps: number;
  /** Where the next micro-batch starts: epoch (0-based) and examples of its order used. */
  epoch: number;
  position: number;
  /** The RNG keys (engine/train/rng.ts): the seed, the current epoch's shuffle state, the next step's first dropout seed. */
  rng: { seed: number; shuffle_state: number; next_dropout_seed: number };
  losses: number[];
  eval_history: { step: number; loss: number }[];
  best_eval_loss: number | null;
  evals_since_best: number;
  elapsed_seconds: number;
  train_examples: number;
  eval_examples: number;
  config: TrainConfig;
  /** Size and SHA-256 (hex) of each other file of the checkpoint. */
  files: Record<string, { bytes: number; sha256: string }>;
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

const CHECKPOINT_DIR = /^step-(\d{6,})$/;


async function fileDigest(file: string): Promise<{ bytes: number; sha256: string }> {
  const data = await readFile(file);
  return { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

/** Removes leftover folders of interrupted writes of `what` (".tmp-<what>-…", ".del-<what>-…") in `dir`. */
export async function removeLeftovers(dir: string, what: 'step' | 'adapter'): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const left = names.filter((n) => n.startsWith(`.tmp-${what}-`) || n.startsWith(`.del-${what}-`));
  for (const n of left) await rm(path.join(dir, n), { recursive: true, force: true });
  return left;
}

/** Step checkpoints in `checkpointsDir`, newest first. */
export async function listCheckpoints(checkpointsDir: string): Promise<{ step: number; dir: string }[]> {
  const names = await readdir(checkpointsDir).catch(() => [] as string[]);
  return names
    .flatMap((n) => {
      const m = CHECKPOINT_DIR.exec(n);
      return m ? [{ step: Number(m[1]), dir: path.join(checkpointsDir, n) }] : [];
    })
    .sort((a, b) => b.step - a.step);
}

async function removeFolder(dir: string): Promise<void> {
  const doomed = path.join(path.dirname(dir), `.del-${path.basename(dir)}-${randomBytes(4).toString('hex')}`);
  await rename(dir, doomed);
  await rm(doomed, { recursive: true, force: true });
}

/** Writes the adapter's moments and step count (see the header). */
async function writeOptimizerState(model: EngineModel, file: string): Promise<void> {
  const info = model.adapterInfo(ADAPTER_NAME);
  const tensors = [];
  for (let layer = 0; layer < model.config.numLayers; layer++)
    for (const proj of info.targets)
      for (const kind of MOMENTS) {
        const data = model.readAdapterTensor(ADAPTER_NAME, layer, proj, kind);
        const cols = data.length / info.rank;
        tensors.push({ name: `layers.${layer}.${proj}.${kind}`, dtype: 'F32' as const, shape: kind.endsWith('A') ? [info.rank, cols] : [cols, info.rank], data });
      }
  await writeSafetensors(file, tensors, { format: 'lora-studio-adamw', optimizer_steps: String(info.optimizerSteps) });
}

/** Writes checkpoint `step` (atomically, see the header); returns its folder. */
export async function writeCheckpoint(
  model: EngineModel,
  checkpointsDir: string,
  state: Omit<TrainerState, 'format' | 'version' | 'files'>,
): Promise<string> {
  await mkdir(checkpointsDir, { recursive: true });
  const final = path.join(checkpointsDir, checkpointName(state.step));
  const temp = path.join(checkpointsDir, `.tmp-${checkpointName(state.step)}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(temp);
  try {
    await savePeftAdapter(model, ADAPTER_NAME, temp, { baseModel: state.config.model });
    await writeOptimizerState(model, path.join(temp, OPTIMIZER_FILE));
    const files: TrainerState['files'] = {};
    for (const f of [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, OPTIMIZER_FILE]) files[f] = await fileDigest(path.join(temp, f));
    const full: TrainerState = { format: STATE_FORMAT, version: 1, ...state, files };
    await writeFileAtomic(path.join(temp, STATE_FILE), [Buffer.from(JSON.stringify(full, null, 1) + '\n')]);
    await syncFolder(temp);
    if (await stat(final).catch(() => null)) await removeFolder(final);
    await rename(temp, final);
    await syncFolder(checkpointsDir);
  } catch (e) {
    await rm(temp, { recursive: true, force: true });
    throw e;
  }
  return final;
}

/** Deletes all but the newest `keep` checkpoints (0 keeps all). */
export async function pruneCheckpoints(checkpointsDir: string, keep: number): Promise<void> {
  if (keep <= 0) return;
  for (const c of (await listCheckpoints(checkpointsDir)).slice(keep)) await removeFolder(c.dir);
}

/** A checkpoint that cannot be resumed; `file` names the file at fault. */
export class CheckpointError extends UserError {
  constructor(
    message: string,
    readonly file: string,
  ) {
    super(message);
  }
}

function fieldCheck(file: string, j: Record<string, unknown>) {
  return (key: string, ok: (v: unknown) => boolean) => {
    if (!ok(j[key])) throw new CheckpointError(`${file}: field "${key}" is missing or invalid; the checkpoint is damaged. Resume from another checkpoint.`, file);
  };
}
const isCount = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** Reads and checks a checkpoint folder: trainer_state.json and every file it lists. */
export async function readCheckpoint(dir: string): Promise<TrainerState> {
  const file = path.join(dir, STATE_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new CheckpointError(`${file} is missing: ${dir} is not a whole checkpoint. Resume from another checkpoint.`, file);
  }
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
    if (!j || typeof j !== 'object' || Array.isArray(j)) throw new Error('not a JSON object');
  } catch (e) {
    throw new CheckpointError(`${file} is not valid JSON (${(e as Error).message}); it is truncated or damaged. Resume from another checkpoint.`, file);
  }
  const check = fieldCheck(file, j);
  check('format', (v) => v === STATE_FORMAT);
  check('version', (v) => v === 1);
  for (const k of ['step', 'total_steps', 'epoch', 'position', 'evals_since_best', 'train_examples', 'eval_examples']) check(k, isCount);
  check('elapsed_seconds', (v) => typeof v === 'number' && v >= 0);
  check('losses', (v) => Array.isArray(v) && v.length === j.step && v.every((x) => typeof x === 'number'));
  check('eval_history', (v) => Array.isArray(v) && v.every((x) => x && isCount(x.step) && typeof x.loss === 'number'));
  check('best_eval_loss', (v) => v === null || typeof v === 'number');
  check('rng', (v) => !!v && typeof v === 'object' && ['seed', 'shuffle_state', 'next_dropout_seed'].every((k) => isCount((v as Record<string, unknown>)[k])));
  check('config', (v) => !!v && typeof v === 'object');
  check('files', (v) => !!v && typeof v === 'object');
  const files = j.files as Record<string, { bytes?: unknown; sha256?: unknown }>;
  for (const name of [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, OPTIMIZER_FILE]) {
    const want = files[name];
    const f = path.join(dir, name);
    if (!want || !isCount(want.bytes) || typeof want.sha256 !== 'string')
      throw new CheckpointError(`${file}: no size and checksum for ${name}; the checkpoint is damaged. Resume from another checkpoint.`, file);
    const got = await fileDigest(f).catch(() => null);
    if (!got) throw new CheckpointError(`${f} is missing; the checkpoint is incomplete. Resume from another checkpoint.`, f);
    if (got.bytes !== want.bytes || got.sha256 !== want.sha256)
      throw new CheckpointError(`${f} is damaged (its size or checksum differs from ${STATE_FILE}). Resume from another checkpoint.`, f);
  }
  return j as unknown as TrainerState;
}

/** The checkpoint folder to resume: `dir` itself, or the newest whole checkpoint of an out folder. */
export async function findCheckpoint(dir: string): Promise<{ dir: string; state: TrainerState }> {
  const abs = path.resolve(dir);
  const info = await stat(abs).catch(() => null);
  if (!info?.isDirectory()) throw new CheckpointError(`${abs}: no such folder; give a checkpoint folder or a training output folder`, abs);
  if (await stat(path.join(abs, STATE_FILE)).catch(() => null)) return { dir: abs, state: await readCheckpoint(abs) };
  const checkpointsDir = path.basename(abs) === 'checkpoints' ? abs : path.join(abs, 'checkpoints');
  const found = await listCheckpoints(checkpointsDir);
  const refused: string[] = [];
  for (const c of found) {
    try {
      return { dir: c.dir, state: await readCheckpoint(c.dir) };
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      refused.push(e.message);
    }
  }
  if (refused.length > 0)
    throw new CheckpointError(`${checkpointsDir}: no whole checkpoint; ${refused.length} damaged:\n  ${refused.join('\n  ')}`, checkpointsDir);
  throw new CheckpointError(`${abs} holds no checkpoint (no ${STATE_FILE}, nothing in ${checkpointsDir}); give a checkpoint folder or a training output folder`, abs);
}

/** Loads a checkpoint's AdamW moments and step count into the adapter (which must have the checkpoint's weights). */
export async function loadOptimizerState(model: EngineModel, dir: string): Promise<void> {
  const file = path.join(dir, OPTIMIZER_FILE);
  const header = await readSafetensorsHeader(file);
  const data = await readFile(file);
  const info = model.adapterInfo(ADAPTER_NAME);
  for (let layer = 0; layer < model.config.numLayers; layer++)
    for (const proj of info.targets as Projection[])
      for (const kind of MOMENTS) {
        const name = `layers.${layer}.${proj}.${kind}`;
        const t = header.tensors.get(name);
        const want = model.readAdapterTensor(ADAPTER_NAME, layer, proj, kind).length;
        if (!t || t.dtype !== 'F32' || t.byteLength !== want * 4)
          throw new CheckpointError(`${file}: tensor ${name} is missing or has the wrong shape; the checkpoint does not match its adapter`, file);
        const values = new Float32Array(want);
        Buffer.from(values.buffer).set(data.subarray(t.offset, t.offset + t.byteLength));
        model.writeAdapterTensor(ADAPTER_NAME, layer, proj, kind, values);
      }
  const steps = Number(header.metadata?.optimizer_steps);
  if (!Number.isInteger(steps) || steps < 0) throw new CheckpointError(`${file}: metadata optimizer_steps is missing`, file);
  model.setOptimizerSteps(ADAPTER_NAME, steps);
}

/** Replaces out/adapter with the model's adapter: written beside it, then swapped in by renames. */
export async function writeFinalAdapter(model: EngineModel, out: string, baseModel: string): Promise<string> {
  const final = path.join(out, 'adapter');
  const temp = path.join(out, `.tmp-adapter-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(temp, { recursive: true });
  try {
    await savePeftAdapter(model, ADAPTER_NAME, temp, { baseModel });
    await syncFolder(temp);
    if (await stat(final).catch(() => null)) await removeFolder(final);
    await rename(temp, final);
    await syncFolder(out);
  } catch (e) {
    await rm(temp, { recursive: true, force: true });
    throw e;
  }
  return final;
}

