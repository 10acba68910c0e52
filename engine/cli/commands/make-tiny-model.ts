// `lora-studio make-tiny-model <dir>`: a small random-weight model in the
// Hugging Face layout (config.json, safetensors weights, the byte-level
// tokenizer and a ChatML chat template), to try the other commands on without
// downloading anything.
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import type { ModelArch } from '../../model/config.ts';
import { UserError } from '../../model/errors.ts';
import type { WeightDtype } from '../../model/safetensors.ts';
import { TINY_VOCAB_SIZE } from '../../model/tiny-tokenizer.ts';
import { createTinyModel } from '../../model/tiny.ts';
import type { CommandContext } from '../context.ts';
import { choiceOption, intOption } from '../flags.ts';
import { formatBytes } from '../render.ts';

interface Flags {
  arch: ModelArch;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocabSize: number;
  tie?: boolean;
  dtype: 'bf16' | 'f16' | 'f32';
  shards: number;
  seed: number;
}

export function defineMakeTinyModel(program: Command, ctx: CommandContext): void {
  program
    .command('make-tiny-model')
    .summary('write a tiny random model with a byte-level tokenizer, to try things on')
    .description(
      'Writes a tiny model with random weights in the Hugging Face layout: config.json, ' +
        'safetensors weights, a byte-level tokenizer and a ChatML chat template. Its outputs ' +
        'are gibberish; it is for trying the other commands quickly.',
    )
    .argument('<dir>', 'folder to create (must be empty or absent)')
    .addOption(choiceOption('--arch <arch>', 'architecture', ['llama', 'mistral', 'qwen2', 'qwen3']).default('llama'))
    .addOption(intOption('--hidden-size <n>', 'hidden size', { min: 2, max: 65536 }).default(64))
    .addOption(intOption('--intermediate-size <n>', 'MLP intermediate size', { min: 1, max: 262144 }).default(128))
    .addOption(intOption('--layers <n>', 'transformer layers', { min: 1, max: 1024 }).default(2))
    .addOption(intOption('--heads <n>', 'attention heads (must divide --hidden-size)', { min: 1, max: 1024 }).default(4))
    .addOption(intOption('--kv-heads <n>', 'key/value heads (must divide --heads)', { min: 1, max: 1024 }).default(2))
    .addOption(
      intOption('--vocab-size <n>', `embedding rows; the byte tokenizer needs ${TINY_VOCAB_SIZE}, so smaller values are ignored`, {
        min: 1,
        max: 1 << 20,
      }).default(TINY_VOCAB_SIZE),
    )
    .option('--tie', 'tie the output projection to the embeddings (no lm_head.weight) (default: off)')
    .addOption(choiceOption('--dtype <dtype>', 'weight dtype', ['bf16', 'f16', 'f32']).default('bf16'))
    .addOption(intOption('--shards <n>', 'number of safetensors files', { min: 1, max: 10000 }).default(1))
    .addOption(intOption('--seed <n>', 'seed of the random weights', { min: 0, max: 2 ** 32 - 1 }).default(0))
    .addHelpText('after', '\nExample:\n  lora-studio make-tiny-model ./tiny --arch qwen2 --layers 4\n')
    .action(async (dir: string, flags: Flags) => {
      await refuseNonEmpty(dir);
      checkShape(flags);
      const model = await createTinyModel(dir, {
        arch: flags.arch,
        hiddenSize: flags.hiddenSize,
        intermediateSize: flags.intermediateSize,
        numLayers: flags.layers,
        numHeads: flags.heads,
        numKvHeads: flags.kvHeads,
        vocabSize: Math.max(flags.vocabSize, TINY_VOCAB_SIZE),
        tie: flags.tie === true,
        dtype: flags.dtype.toUpperCase() as WeightDtype,
        shards: flags.shards,
        seed: flags.seed,
        tokenizer: true,
      });
      let bytes = 0;
      for (const f of model.files) bytes += (await stat(f)).size;
      ctx.stdout.write(
        `Wrote a tiny ${flags.arch} model to ${model.dir}: ${flags.layers} layers, hidden size ${flags.hiddenSize}, ` +
          `vocabulary ${model.config['vocab_size']}, ${model.files.length} weight file${model.files.length === 1 ? '' : 's'} (${formatBytes(bytes)}).\n`,
      );
    });
}

async function refuseNonEmpty(dir: string): Promise<void> {
  const info = await stat(dir).catch(() => null);
  if (!info) return;
  if (!info.isDirectory()) throw new UserError(`${path.resolve(dir)} exists and is not a folder; choose a new folder for the model.`);
  if ((await readdir(dir)).length > 0)
    throw new UserError(`${path.resolve(dir)} is not empty; choose a new or empty folder so nothing is overwritten.`);
}

function checkShape(f: Flags): void {
  if (f.hiddenSize % f.heads !== 0)
    throw new UserError(`--heads ${f.heads} does not divide --hidden-size ${f.hiddenSize}; each head gets hidden-size / heads dimensions.`);
  if ((f.hiddenSize / f.heads) % 2 !== 0)
    throw new UserError(`--hidden-size / --heads is ${f.hiddenSize / f.heads}; rotary embeddings need an even head size.`);
  if (f.heads % f.kvHeads !== 0) throw new UserError(`--kv-heads ${f.kvHeads} does not divide --heads ${f.heads}.`);
  // embeddings, final norm, and per layer 7 projections + 2 norms; lm_head unless tied
  const fewestTensors = 2 + 9 * f.layers + (f.tie ? 0 : 1);
  if (f.shards > fewestTensors) throw new UserError(`--shards ${f.shards} is more than the model's ${fewestTensors} tensors.`);
}
