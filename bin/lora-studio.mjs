#!/usr/bin/env node
// The `lora-studio` command. The engine and CLI are TypeScript, run through
// tsx's loader so no separate build step is needed.
import { register } from 'tsx/esm/api';

register();
// A reader that goes away (`lora-studio train --help | head`) closes the pipe:
// stop quietly instead of failing on the next write.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
}
const { main } = await import('../engine/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
