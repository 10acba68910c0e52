// The model an estimate is for: a preset shape of a well-known model
// (engine/model/presets.ts) or a local folder's config.json. Only the shape
// is read; no weights are loaded.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseModelConfig, type ModelConfig } from '../model/config.ts';
import { ModelLoadError, UserError } from '../model/errors.ts';
import { MODEL_PRESETS, MODEL_PRESET_NAMES, type ModelPresetName } from '../model/presets.ts';

export interface ModelShape {
  name: string; // preset name, or the folder's name
  config: ModelConfig;
  source: 'preset' | 'folder';
  dir: string | null; // absolute, for a folder
}

const squash = (s: string) => s.toLowerCase().replace(/[^a-z0-9.]/g, '');

/** The preset a name means ("llama-3.1-8b", "Llama 3.1 8B", "smollm2-135m"), or null. */
export function findPreset(name: string): ModelPresetName | null {
  const want = squash(name);
  return MODEL_PRESET_NAMES.find((p) => squash(p) === want) ?? null;
}

/** A preset name, or a folder holding config.json. */
export async function resolveModelShape(spec: string): Promise<ModelShape> {
  if (typeof spec !== 'string' || !spec.trim())
    throw new UserError(`--model: give a model folder or one of the presets: ${MODEL_PRESET_NAMES.join(', ')}`);
  const info = await stat(spec).catch(() => null);
  if (info?.isDirectory()) {
    const dir = path.resolve(spec);
    const file = path.join(dir, 'config.json');
    const text = await readFile(file, 'utf8').catch(() => null);
    if (text === null)
      throw new ModelLoadError(`${dir} has no config.json: choose the folder of a Hugging Face model (the one that holds config.json).`, file);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new ModelLoadError(`${file} is not valid JSON (${(e as Error).message}). Fix it or use an unmodified copy of the model.`, file);
    }
    return { name: path.basename(dir), config: parseModelConfig(json, file), source: 'folder', dir };
  }
  const preset = findPreset(spec);
  if (preset) return { name: preset, config: MODEL_PRESETS[preset], source: 'preset', dir: null };
  throw new UserError(
    `--model: '${spec}' is neither a model folder nor a preset. Give the folder that holds config.json, or one of: ${MODEL_PRESET_NAMES.join(', ')}`,
  );
}
