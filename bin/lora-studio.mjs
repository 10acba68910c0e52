#!/usr/bin/env node
// The `lora-studio` command. The engine and CLI are TypeScript, run through
// tsx's loader so no separate build step is needed.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../engine/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
