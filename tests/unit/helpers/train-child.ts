// Runs one training run in its own process, for the kill-and-resume test:
//   node --import tsx tests/unit/helpers/train-child.ts '<TrainConfig as JSON>'
// Each TrainEvent is written to stdout as one JSON line.
import { runTraining } from '../../../engine/train/run.ts';
import type { TrainConfig } from '../../../engine/train/types.ts';

const config = JSON.parse(process.argv[2]!) as TrainConfig;
await runTraining(config, { onEvent: (e) => process.stdout.write(JSON.stringify(e) + '\n') });
