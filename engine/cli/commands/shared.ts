// Flags that several commands share: how a dataset is read, how a model and
// an adapter are loaded, and the sampling settings of generation.
import path from 'node:path';
import { Option } from 'commander';
import { EngineModel } from '../../api.ts';
import { loadPeftAdapter } from '../../adapters/peft.ts';
import { DATA_FORMATS, type DataFormat } from '../../data/formats.ts';
import type { LossOn } from '../../data/masks.ts';
import { ModelTokenizer } from '../../data/tokenizer.ts';
import { DEFAULT_MAX_TOKENS } from '../../generate/generate.ts';
import { DEFAULT_SAMPLING, type SamplingOptions } from '../../generate/sampler.ts';
import { TRAIN_DEFAULTS } from '../../train/config.ts';
import { choiceOption, intOption, numberOption, repeatableOption } from '../flags.ts';

export const LOSS_ON_CHOICES: readonly LossOn[] = ['assistant', 'all', 'last-assistant'];

export interface DataFlags {
  format: DataFormat | 'auto';
  columns?: string;
  seqLen: number;
  lossOn: LossOn;
}

/** --format, --columns, --seq-len, --loss-on, with training's defaults (so a report shows what training would see). */
export function dataOptions(): Option[] {
  return [
    choiceOption('--format <format>', 'record format; auto detects it from the extension and the first record', ['auto', ...DATA_FORMATS]).default('auto'),
    new Option('--columns <map>', 'CSV columns for the record fields, e.g. prompt=question,completion=answer (default: columns named like the fields)'),
    intOption('--seq-len <n>', 'longest sequence in tokens; longer examples are cut', { min: 2, max: 1 << 20 }).default(TRAIN_DEFAULTS.seqLen),
    choiceOption('--loss-on <which>', 'which tokens of a conversation are trained', LOSS_ON_CHOICES).default('assistant'),
  ];
}

export type Method = 'lora' | 'qlora';

export function methodOption(): Option {
  return choiceOption('--method <method>', 'base weights: lora (16-bit) or qlora (4-bit NF4)', ['lora', 'qlora']).default('lora');
}

/** Loads the base model and, when given, the adapter (enabled) under its folder's name. */
export async function loadModel(
  modelDir: string,
  method: Method,
  adapterDir: string | undefined,
  signal: AbortSignal,
): Promise<{ model: EngineModel; adapterName: string | null }> {
  const model = await EngineModel.load(modelDir, { method, signal });
  if (adapterDir === undefined) return { model, adapterName: null };
  try {
    const adapterName = adapterNameOf(adapterDir);
    await loadPeftAdapter(model, adapterDir, adapterName);
    return { model, adapterName };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** An engine adapter name from a folder name (1-64 of [A-Za-z0-9_.-]); a run's "<run>/adapter" is named after the run. */
export function adapterNameOf(dir: string): string {
  const full = path.resolve(dir);
  const base = path.basename(full) === 'adapter' ? path.basename(path.dirname(full)) : path.basename(full);
  const name = base.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
  return name === '' || name === '.' || name === '..' ? 'adapter' : name;
}

export async function loadTokenizer(modelDir: string): Promise<ModelTokenizer> {
  return ModelTokenizer.load(modelDir);
}

export interface SamplingFlags {
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
  stop?: string[];
}

/** --max-tokens, --temperature, --top-k, --top-p, --repetition-penalty, --seed, --stop. */
export function samplingOptions(): Option[] {
  const d = DEFAULT_SAMPLING;
  return [
    intOption('--max-tokens <n>', 'most tokens to generate (an end-of-sequence token counts)', { min: 1, max: 1 << 20 }).default(DEFAULT_MAX_TOKENS),
    numberOption('--temperature <t>', 'sampling temperature; 0 always takes the most likely token', { min: 0, max: 100 }).default(d.temperature),
    intOption('--top-k <k>', 'keep the k most likely tokens; 0 turns it off', { min: 0 }).default(d.topK),
    numberOption('--top-p <p>', 'nucleus sampling: keep the most likely tokens up to probability p; 1 turns it off', {
      min: 0,
      minExclusive: true,
      max: 1,
    }).default(d.topP),
    numberOption('--repetition-penalty <x>', 'above 1 discourages repeating tokens; 1 turns it off', { min: 0, minExclusive: true, max: 100 }).default(
      d.repetitionPenalty,
    ),
    intOption('--seed <n>', 'seed of the sampling; the same seed gives the same text', { min: 0, max: Number.MAX_SAFE_INTEGER }).default(d.seed),
    repeatableOption('--stop <text>', 'stop before this text'),
  ];
}

export function samplingSettings(f: SamplingFlags): SamplingOptions & { maxTokens: number; stop: string[] } {
  return {
    maxTokens: f.maxTokens,
    temperature: f.temperature,
    topK: f.topK,
    topP: f.topP,
    repetitionPenalty: f.repetitionPenalty,
    seed: f.seed,
    stop: f.stop ?? [],
  };
}

/** The model's end-of-sequence ids and the tokenizer's, so a chat turn's end token stops generation too. */
export function eosIds(model: EngineModel, tokenizer: ModelTokenizer): number[] {
  const ids = new Set(model.config.eosTokenIds);
  if (tokenizer.eosTokenId !== null) ids.add(tokenizer.eosTokenId);
  return [...ids];
}
