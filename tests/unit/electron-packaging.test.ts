// Packaging: electron-builder.yml as electron-builder reads it, the icon, and
// the esbuild bundle of the Electron main process, preload and engine entry.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';
import type { EngineExit, FromEngine } from '../../main/jobs/engine-process.ts';
import { nodeChildLauncher } from '../../main/jobs/child-launcher.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// js-yaml is what electron-builder itself reads the file with.
const yaml = createRequire(import.meta.url)('js-yaml') as { load(text: string): unknown };

type BuilderConfig = {
  appId?: string;
  productName?: string;
  extraMetadata?: { main?: string };
  files?: string[];
  asarUnpack?: string[];
  extraResources?: Array<{ from: string; to: string }>;
  npmRebuild?: boolean;
  win?: { target?: Array<{ target: string }> };
  linux?: { target?: string[] };
  mac?: { target?: string[] };
  icon?: string;
};

test('electron-builder.yml: app id and name, bundled main, .node files unpacked, native addon shipped, targets', () => {
  const config = yaml.load(readFileSync(path.join(root, 'electron-builder.yml'), 'utf8')) as BuilderConfig;
  assert.match(config.appId ?? '', /^[a-z0-9]+(\.[a-z0-9-]+)+$/);
  assert.equal(config.productName, 'LoRA Studio');
  assert.equal(config.extraMetadata?.main, 'dist/electron/main.js');
  for (const f of ['dist/electron/**', 'dist/renderer/**', 'package.json']) assert.ok(config.files?.includes(f), f);
  assert.ok(config.asarUnpack?.includes('**/*.node'), 'every .node file is unpacked from asar');
  assert.deepEqual(config.extraResources, [{ from: 'build/native/lora_studio_native.node', to: 'native/lora_studio_native.node' }]);
  assert.equal(config.npmRebuild, true, 'better-sqlite3 is rebuilt for Electron');
  assert.deepEqual(config.win?.target?.map((t) => t.target), ['nsis']);
  assert.deepEqual(config.linux?.target, ['AppImage', 'deb']);
  assert.deepEqual(config.mac?.target, ['dmg']);
  const icon = readFileSync(path.join(root, config.icon ?? ''));
  assert.equal(icon.subarray(1, 4).toString('ascii'), 'PNG');
  assert.equal(icon.readUInt32BE(16), 512, 'icon width');
  assert.equal(icon.readUInt32BE(20), 512, 'icon height');
});

test('the Electron bundle builds: main and engine entry as ESM, preload as one CommonJS file', async () => {
  // Two folders below the root, as dist/electron is, so node_modules and the paths built from import.meta.url resolve.
  const out = path.join(root, 'dist', `electron-test-${process.pid}`);
  try {
    await promisify(execFile)(process.execPath, [path.join(root, 'scripts', 'build-electron.mjs'), '--out', out], { cwd: root });
    const main = readFileSync(path.join(out, 'main.js'), 'utf8');
    const preload = readFileSync(path.join(out, 'preload.cjs'), 'utf8');
    const engineJs = readFileSync(path.join(out, 'engine-entry.js'), 'utf8');
    // Our TypeScript is inside; packages stay external (better-sqlite3 and the addon load from disk).
    assert.match(main, /from "electron"/);
    assert.match(main, /requestSingleInstanceLock/);
    assert.doesNotMatch(main, /from "\.{1,2}\//, 'no relative imports left: all our code is bundled');
    assert.doesNotMatch(engineJs, /from "\.{1,2}\//);
    assert.doesNotMatch(engineJs, /from "electron"/, 'the engine never loads electron');
    // The preload requires nothing but electron.
    const required = [...preload.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]);
    assert.deepEqual([...new Set(required)], ['electron']);
    assert.match(preload, /exposeInMainWorld\("loraStudio"/);
    // The bundled engine entry runs (here in a Node child; in the app, a utility process) and answers a bad config.
    const engine = nodeChildLauncher({ entry: path.join(out, 'engine-entry.js'), onStderr: () => {} })();
    const exited = new Promise<EngineExit>((resolve) => engine.onExit(resolve));
    const answer = new Promise<FromEngine>((resolve) => engine.onMessage(resolve));
    engine.send({ type: 'train', jobId: 'bundle-check', config: {} as never });
    const reply = await answer;
    engine.kill();
    await exited;
    assert.equal(reply.type, 'failed');
    assert.equal(reply.jobId, 'bundle-check');
    assert.equal(reply.type === 'failed' && reply.kind, 'user');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
