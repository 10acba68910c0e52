#!/usr/bin/env node
// Runs the native test binary once per instruction set this CPU supports, so
// the AVX-512, AVX2 and scalar kernel paths are all checked on one machine.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const exe = path.join(root, 'build', 'native', process.platform === 'win32' ? 'Release/ls_native_tests.exe' : 'ls_native_tests');
if (!existsSync(exe)) {
  console.error(`run-native-tests: ${exe} is missing; build it with "npm run build:native".`);
  process.exit(1);
}
const native = createRequire(import.meta.url)(path.join(root, 'build', 'native', 'lora_studio_native.node'));
const order = ['avx512', 'avx2', 'scalar'];
const isas = order.slice(order.indexOf(native.cpuInfo().detectedIsa));
let failed = false;
for (const isa of isas) {
  console.log(`# native tests, kernels: ${isa}`);
  const r = spawnSync(exe, process.argv.slice(2), { stdio: 'inherit', env: { ...process.env, LORA_STUDIO_ISA: isa } });
  if (r.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
