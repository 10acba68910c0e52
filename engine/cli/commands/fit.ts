// `lora-studio fit`: the best training settings that fit a device (this
// machine or a catalogue card), keeping the user's fixed choices
// (engine/estimate/fit.ts).
import { Option, type Command } from 'commander';
import { PROJECTIONS, type Projection } from '../../api.ts';
import type { CommandContext } from '../context.ts';
import { choiceOption, intOption, parseNameList } from '../flags.ts';
import { deviceOption } from './estimate.ts';
import type { Method } from './shared.ts';

interface Flags {
  model: string;
  device: string;
  method?: Method;
  rank?: number;
  targets?: Projection[];
  seqLen?: number;
  batch?: number;
  gradientCheckpointing?: boolean;
  json?: boolean;
}

export function defineFit(program: Command, ctx: CommandContext): void {
  program
    .command('fit')
    .summary('find the longest sequence, largest batch and rank that fit a device')
    .description(
      'Searches the settings by the memory estimate, keeping 10% of the device\'s usable memory free: the longest ' +
        'sequence length (4096, 2048, 1024, 512, 256), then the largest batch, then the largest rank. Gradient ' +
        'checkpointing and QLoRA are switched on only when needed, and the output says why. Flags you give are kept as they are.',
    )
    .requiredOption('--model <dir|preset>', 'a model folder (its config.json is read) or a preset: SmolLM2-135M, Llama-3.1-8B, ...')
    .addOption(deviceOption())
    .addOption(choiceOption('--method <method>', 'keep this base: lora (16-bit) or qlora (4-bit NF4) (default: chosen)', ['lora', 'qlora']))
    .addOption(intOption('--rank <r>', 'keep this LoRA rank (default: chosen)', { min: 1, max: 4096 }))
    .addOption(
      new Option('--targets <list>', `projections to adapt: comma list of ${PROJECTIONS.join(',')}, or all (default: all)`)
        .argParser((v: string) => parseNameList('--targets', v, PROJECTIONS)),
    )
    .addOption(intOption('--seq-len <n>', 'keep this sequence length (default: chosen)', { min: 1, max: 1 << 20 }))
    .addOption(intOption('--batch <b>', 'keep this micro-batch size (default: chosen)', { min: 1, max: 4096 }))
    .option('--gradient-checkpointing', 'keep gradient checkpointing on (default: chosen)')
    .option('--no-gradient-checkpointing', 'keep gradient checkpointing off (default: chosen)')
    .option('--json', 'print one JSON object (default: off)')
    .addHelpText('after', '\nExamples:\n  lora-studio fit --model Llama-3.1-8B --device 4060\n  lora-studio fit --model ./my-model --method lora --json\n')
    .action(async (flags: Flags) => {
      const { resolveModelShape } = await import('../../estimate/model-source.ts');
      const { resolveDevice } = await import('../../estimate/device.ts');
      const { fitSettings } = await import('../../estimate/fit.ts');
      const { fitToJson, renderFit } = await import('../../estimate/report.ts');
      const model = await resolveModelShape(flags.model);
      const { device } = await resolveDevice(flags.device);
      const result = fitSettings(model, device, {
        method: flags.method,
        rank: flags.rank,
        targets: flags.targets,
        seqLen: flags.seqLen,
        batch: flags.batch,
        checkpointing: flags.gradientCheckpointing,
      });
      if (flags.json) ctx.stdout.write(JSON.stringify(fitToJson(result, model.name, device)) + '\n');
      else ctx.stdout.write(renderFit(result, model.name, device) + '\n');
    });
}
