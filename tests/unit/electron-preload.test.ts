// The preload bridge, bundled as the app bundles it and run in a fresh V8
// context with a stand-in for Electron's contextBridge and ipcRenderer (the
// Electron binary cannot run here; nothing else is replaced).
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, test } from 'node:test';
import vm from 'node:vm';
import { build } from 'esbuild';
import { API_CHANNEL, EVENT_CHANNEL } from '../../electron/channels.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let bundle = '';

before(async () => {
  const out = await build({
    absWorkingDir: root,
    entryPoints: ['electron/preload.ts'],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    external: ['electron'],
    write: false,
    logLevel: 'silent',
  });
  bundle = out.outputFiles[0]?.text ?? '';
});

type Handler = (event: unknown, ...args: unknown[]) => void;

function loadPreload(invokeReply: (channel: string, ...args: unknown[]) => unknown) {
  const exposed: Array<[string, unknown]> = [];
  const invoked: Array<[string, unknown[]]> = [];
  const subscribed = new Map<string, Handler[]>();
  const required: string[] = [];
  const electron = {
    contextBridge: { exposeInMainWorld: (key: string, value: unknown) => exposed.push([key, value]) },
    ipcRenderer: {
      invoke: async (channel: string, ...args: unknown[]) => {
        invoked.push([channel, args]);
        return invokeReply(channel, ...args);
      },
      on: (channel: string, handler: Handler) => {
        subscribed.set(channel, [...(subscribed.get(channel) ?? []), handler]);
      },
    },
  };
  const module = { exports: {} };
  vm.runInNewContext(bundle, {
    module,
    exports: module.exports,
    process: { platform: 'linux' },
    require: (id: string) => {
      required.push(id);
      if (id === 'electron') return electron;
      throw new Error(`a sandboxed preload cannot require ${id}`);
    },
  });
  const emit = (channel: string, payload: unknown) => {
    for (const h of subscribed.get(EVENT_CHANNEL) ?? []) h({ sender: 'ipc event' }, { channel, payload });
  };
  return { exposed, invoked, subscribed, required, emit };
}

type Bridge = {
  call(method: string, input: unknown): Promise<unknown>;
  on(channel: string, listener: (payload: unknown) => void): () => void;
  platform: string;
};

test('the preload exposes exactly one object, loraStudio, with call, on and platform', () => {
  const { exposed, required, subscribed } = loadPreload(() => ({ ok: true, output: null }));
  assert.equal(exposed.length, 1);
  const [key, value] = exposed[0]!;
  assert.equal(key, 'loraStudio');
  assert.deepEqual(Object.keys(value as object).sort(), ['call', 'on', 'platform']);
  assert.equal((value as Bridge).platform, 'linux');
  assert.deepEqual([...new Set(required)], ['electron'], 'requires nothing but electron');
  assert.deepEqual([...subscribed.keys()], [EVENT_CHANNEL], 'listens on the event channel only');
});

test('call goes over the api channel only and resolves with the output', async () => {
  const { exposed, invoked } = loadPreload((_c, method, input) => ({ ok: true, output: { method, input } }));
  const bridge = exposed[0]![1] as Bridge;
  const out = await bridge.call('shelf.list', { query: 'x' });
  assert.deepEqual(out, { method: 'shelf.list', input: { query: 'x' } });
  assert.deepEqual(invoked, [[API_CHANNEL, ['shelf.list', { query: 'x' }]]]);
});

test('a failed call rejects with the error kind, message and field', async () => {
  const { exposed } = loadPreload(() => ({ ok: false, error: { kind: 'invalid', message: 'rank must be positive', field: 'config.rank' } }));
  const bridge = exposed[0]![1] as Bridge;
  await assert.rejects(bridge.call('jobs.startTraining', {}), (err: unknown) => {
    assert.deepEqual(err, { kind: 'invalid', message: 'rank must be positive', field: 'config.rank' });
    return true;
  });
  await assert.rejects(bridge.call(42 as never, {}), (err: unknown) => (err as { kind: string }).kind === 'invalid');
});

test('on delivers only its channel\'s payloads, never the IPC event, until unsubscribed', () => {
  const { exposed, emit } = loadPreload(() => null);
  const bridge = exposed[0]![1] as Bridge;
  const jobs: unknown[][] = [];
  const downloads: unknown[] = [];
  const off = bridge.on('job', (...args) => jobs.push(args));
  bridge.on('download', (p) => downloads.push(p));
  emit('job', { type: 'status', jobId: 'a' });
  emit('download', { id: 'd' });
  emit('other', { ignored: true });
  off();
  emit('job', { type: 'status', jobId: 'b' });
  assert.deepEqual(jobs, [[{ type: 'status', jobId: 'a' }]]);
  assert.deepEqual(downloads, [{ id: 'd' }]);
  assert.throws(() => bridge.on('job', 'not a function' as never), /listener/);
});
