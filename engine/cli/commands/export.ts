// `lora-studio export`: an adapter out of LoRA Studio, either merged into a
// copy of the base model (a standalone Hugging Face model folder), or as a
// PEFT adapter folder (copied whole: the folder appears complete or not at all).
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, readPeftConfig } from '../../adapters/peft.ts';
import { UserError } from '../../model/errors.ts';
import { readSafetensorsHeader } from '../../model/safetensors.ts';
import { EXIT_INTERRUPTED, type CommandContext } from '../context.ts';
import { choiceOption, requireFlag } from '../flags.ts';
import { CountBar, formatBytes } from '../render.ts';

interface Flags {
  adapter: string;
  to: 'merged' | 'peft';
  model?: string;
  out: string;
}

export function defineExport(program: Command, ctx: CommandContext): void {
  program
    .command('export')
    .summary('export an adapter: merged into the base model, or as a PEFT folder')
    .description(
      '--to merged writes a copy of the base model with the adapter folded into its weights (a plain ' +
        'Hugging Face model folder that needs no adapter support). --to peft copies the adapter as a PEFT ' +
        'folder (adapter_config.json + adapter_model.safetensors) for transformers/PEFT, vLLM and others.',
    )
    .requiredOption('--adapter <dir>', 'PEFT adapter folder (e.g. <run>/adapter)')
    .addOption(choiceOption('--to <kind>', 'merged or peft', ['merged', 'peft']).makeOptionMandatory())
    .option('--model <dir>', 'base model folder the adapter was trained on (needed for --to merged)')
    .requiredOption('--out <dir>', 'folder to create (must be absent or empty)')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  lora-studio export --adapter ./run/adapter --to merged --model ./tiny --out ./tiny-merged\n' +
        '  lora-studio export --adapter ./run/adapter --to peft --out ./my-adapter\n',
    )
    .action(async (flags: Flags) => {
      await refuseNonEmpty(flags.out);
      if (flags.to === 'peft') {
        const files = await exportPeft(flags.adapter, flags.out);
        ctx.stdout.write(`Wrote the PEFT adapter ${path.resolve(flags.out)} (${files.join(', ')}).\n`);
        return;
      }
      const modelDir = requireFlag(flags.model, '--model', 'with --to merged (the base model the adapter was trained on)');
      const { exportMerged } = await import('../../adapters/merge.ts');
      const bar = new CountBar(ctx.stderr, 'merging');
      let result: Awaited<ReturnType<typeof exportMerged>>;
      try {
        result = await exportMerged({
          modelDir,
          adapterDir: flags.adapter,
          outDir: flags.out,
          signal: ctx.signal,
          onProgress: (done: number, total: number, tensor: string) => bar.update(done, total, tensor),
        });
      } finally {
        bar.stop();
      }
      if (ctx.interrupted) {
        ctx.exitCode = EXIT_INTERRUPTED;
        return;
      }
      ctx.stdout.write(`Wrote the merged model ${result.outDir}: ${result.tensors} tensors (${result.merged} with the adapter folded in), ${formatBytes(result.bytes)}.\n`);
    });
}

async function refuseNonEmpty(dir: string): Promise<void> {
  const info = await stat(dir).catch(() => null);
  if (!info) return;
  if (!info.isDirectory()) throw new UserError(`--out ${path.resolve(dir)} exists and is not a folder; choose a new folder.`);
  if ((await readdir(dir)).length > 0) throw new UserError(`--out ${path.resolve(dir)} is not empty; choose a new or empty folder so nothing is overwritten.`);
}

/**
 * Copies a PEFT adapter folder: checks it first (its config and the weights'
 * header), copies into a hidden folder beside `outDir`, syncs each file, then
 * renames the folder into place. Returns the file names copied.
 */
export async function exportPeft(adapterDir: string, outDir: string): Promise<string[]> {
  await readPeftConfig(adapterDir);
  await readSafetensorsHeader(path.join(adapterDir, PEFT_WEIGHTS_FILE));
  const target = path.resolve(outDir);
  await mkdir(path.dirname(target), { recursive: true });
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const files = [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE];
  await mkdir(temp);
  try {
    for (const name of files) {
      await copyFile(path.join(adapterDir, name), path.join(temp, name));
      const handle = await open(path.join(temp, name), 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    // An empty target folder (refuseNonEmpty allowed it) is replaced.
    await rmdir(target).catch(() => undefined);
    await rename(temp, target);
  } catch (e) {
    await rm(temp, { recursive: true, force: true });
    throw e;
  }
  return files;
}
