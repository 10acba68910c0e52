#!/usr/bin/env node
// Builds the native core with CMake, offline: the Node-API headers come from
// the node-api-headers and node-addon-api packages, so no Node headers or
// prebuilt binaries are downloaded. Output: build/native/lora_studio_native.node
// and build/native/ls_native_tests.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// LORA_STUDIO_BUILD_DIR builds elsewhere (parallel builds of one tree).
const buildDir = process.env.LORA_STUDIO_BUILD_DIR ? path.resolve(process.env.LORA_STUDIO_BUILD_DIR) : path.join(root, 'build', 'native');
const debug = process.argv.includes('--debug');

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root });
  if (r.error) {
    console.error(`build-native: could not run ${cmd}: ${r.error.message}. Install CMake 3.16+ and a C++17 compiler.`);
    process.exit(1);
  }
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const headers = require('node-api-headers');
const addonApi = require('node-addon-api');
const addonApiDir = path.resolve(root, addonApi.include_dir ?? addonApi.include.replace(/"/g, ''));
const args = [
  '-S', path.join(root, 'engine', 'native'),
  '-B', buildDir,
  `-DCMAKE_BUILD_TYPE=${debug ? 'Debug' : 'Release'}`,
  `-DNODE_API_HEADERS_DIR=${headers.include_dir}`,
  `-DNODE_ADDON_API_DIR=${addonApiDir}`,
];
if (process.platform === 'win32') args.push(`-DNODE_API_DEF=${headers.def_paths.node_api_def}`);
if (process.platform !== 'win32') args.push(`-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=${buildDir}`, `-DCMAKE_RUNTIME_OUTPUT_DIRECTORY=${buildDir}`);
run('cmake', args);
run('cmake', ['--build', buildDir, '--config', debug ? 'Debug' : 'Release', '-j', String(Math.max(1, cpus().length))]);
