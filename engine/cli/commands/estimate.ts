// `lora-studio estimate`: how much memory a training run will take on a
// device, and whether it fits, before anything is loaded (engine/estimate).
import { Option, type Command } from 'commander';
import { PROJECTIONS, type Projection } from '../../api.ts';
import { TRAIN_DEFAULTS } from '../../train/config.ts';
import type { CommandContext } from '../context.ts';
import { intOption, parseNameList } from '../flags.ts';
import { methodOption, type Method } from './shared.ts';

interface Flags {
  model: string;
  method: Method;
  rank: number;
  targets: Projection[];
  seqLen: number;
  batch: number;
  gradientCheckpointing: boolean;
  device: string;
  json?: boolean;
}

/** --device: where the run would go. */
export function deviceOption(): Option {
  return new Option(
    '--device <device>',
    'cpu (this machine\'s RAM), a GPU index of this machine (0, 1, ...), or a card from the catalogue ("4090", "rtx 3060 12gb", "rx 7900 xtx")',
  ).default('cpu');
}

export function defineEstimate(program: Command, ctx: CommandContext): void {
  program
    .command('estimate')
    .summary('predict the memory a training run takes and whether it fits a device')
    .description(
      'Computes, without loading the weights, the peak memory of one training step from the engine\'s own ' +
        'allocation plan (base weights, adapters, gradients, optimizer state, activations, workspace), adds the ' +
        'device\'s fixed overheads, and compares the total with the device\'s memory.',
    )
    .requiredOption('--model <dir|preset>', 'a model folder (its config.json is read) or a preset: SmolLM2-135M, Llama-3.1-8B, ...')
    .addOption(methodOption())
    .addOption(intOption('--rank <r>', 'LoRA rank', { min: 1, max: 4096 }).default(TRAIN_DEFAULTS.rank))
    .addOption(
      new Option('--targets <list>', `projections to adapt: comma list of ${PROJECTIONS.join(',')}, or all`)
        .argParser((v: string) => parseNameList('--targets', v, PROJECTIONS))
        .default([...TRAIN_DEFAULTS.targets], 'all'),
    )
    .addOption(intOption('--seq-len <n>', 'tokens per sequence', { min: 1, max: 1 << 20 }).default(TRAIN_DEFAULTS.seqLen))
    .addOption(intOption('--batch <b>', 'sequences per micro-batch', { min: 1, max: 4096 }).default(TRAIN_DEFAULTS.batchSize))
    .option('--no-gradient-checkpointing', 'keep all activations: faster, more memory (default: recompute per layer)')
    .addOption(deviceOption())
    .option('--json', 'print one JSON object (total_bytes is the predicted peak; see engine/estimate/report.ts) (default: off)')
    .addHelpText(
      'after',
      '\nExamples:\n  lora-studio estimate --model Llama-3.1-8B --method qlora --rank 16 --seq-len 1024 --batch 1 --device 4060\n' +
        '  lora-studio estimate --model ./my-model --seq-len 2048 --json\n',
    )
    .action(async (flags: Flags) => {
      const { resolveModelShape } = await import('../../estimate/model-source.ts');
      const { resolveDevice } = await import('../../estimate/device.ts');
      const { estimateMemory } = await import('../../estimate/estimate.ts');
      const { estimateToJson, renderEstimate } = await import('../../estimate/report.ts');
      const model = await resolveModelShape(flags.model);
      const { device } = await resolveDevice(flags.device);
      const estimate = estimateMemory(
        model,
        { method: flags.method, rank: flags.rank, targets: flags.targets, seqLen: flags.seqLen, batch: flags.batch, checkpointing: flags.gradientCheckpointing },
        device,
      );
      if (flags.json) ctx.stdout.write(JSON.stringify(estimateToJson(estimate)) + '\n');
      else ctx.stdout.write(renderEstimate(estimate) + '\n');
    });
}
