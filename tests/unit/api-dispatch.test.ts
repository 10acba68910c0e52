// The API boundary: malformed calls are refused naming the field, errors are
// sorted into user / internal, and the shelf and comparison calls run against
// a real library in a temp app data folder (every output checked against the
// contract's schema). The engine launcher is the real child-process one; no
// test here starts an engine process.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UserError } from '../../engine/model/errors.ts';
import { API, API_METHODS, DATA_FORMATS, MEMORY_CATEGORIES, PROJECTIONS, type ApiHandlers } from '../../main/api/contract.ts';
import { createDispatch, type DispatchResult } from '../../main/api/dispatch.ts';
import { nodeChildLauncher } from '../../main/jobs/child-launcher.ts';
import { createServices, type Services } from '../../main/services.ts';
import { PROJECTIONS as ENGINE_PROJECTIONS } from '../../engine/api.ts';
import { DATA_FORMATS as ENGINE_DATA_FORMATS } from '../../engine/data/formats.ts';
import { MEMORY_CATEGORIES as ENGINE_MEMORY_CATEGORIES } from '../../engine/native/binding.ts';

const GOLDEN_MODEL = path.resolve('tests/golden/models/llama_gqa');
const GOLDEN_ADAPTER = path.join(GOLDEN_MODEL, 'adapter');

const roots: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lora-studio-api-'));
  roots.push(dir);
  return dir;
}

function ok(r: DispatchResult): unknown {
  if (!r.ok) assert.fail(`expected success, got ${r.error.kind}: ${r.error.message}`);
  return r.output;
}
function failed(r: DispatchResult) {
  if (r.ok) assert.fail(`expected an error, got ${JSON.stringify(r.output)}`);
  return r.error;
}

describe('the contract', () => {
  it('keeps its copies of engine lists equal to the engine', () => {
    assert.deepEqual([...PROJECTIONS], [...ENGINE_PROJECTIONS]);
    assert.deepEqual([...DATA_FORMATS], [...ENGINE_DATA_FORMATS]);
    assert.deepEqual([...MEMORY_CATEGORIES], [...ENGINE_MEMORY_CATEGORIES]);
  });

  it('imports nothing but zod (the renderer imports it)', async () => {
    const { readFileSync } = await import('node:fs');
    const text = readFileSync(path.resolve('main/api/contract.ts'), 'utf8');
    const imports = [...text.matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]);
    assert.deepEqual(imports, ['zod']);
  });
});

describe('dispatch', () => {
  const logged: unknown[] = [];
  const handlers = {
    'shelf.rename': ({ id, name }: { id: string; name: string }) => {
      if (id === 'user') throw new UserError('No adapter user: refresh the shelf.');
      if (id === 'bug') throw new TypeError('x is undefined');
      if (id === 'drift') return { id, name: 42 };
      return { id, name };
    },
  } as unknown as ApiHandlers;
  const dispatch = createDispatch(handlers, { checkOutputs: true, log: (_m, e) => logged.push(e) });

  it('refuses a call with a field of the wrong type, naming the field', async () => {
    const e = failed(await dispatch('shelf.rename', { id: 'a', name: 5 }));
    assert.equal(e.kind, 'invalid');
    assert.equal(e.field, 'name');
    assert.match(e.message, /shelf\.rename: name /);
  });

  it('names a nested field by its path', async () => {
    const services = createServices({ appDataDir: tempDir(), launcher: nodeChildLauncher() });
    try {
      const e = failed(await services.dispatch('jobs.startTraining', { config: { model: '/m', data: '/d.jsonl', rank: 'sixteen' } }));
      assert.equal(e.kind, 'invalid');
      assert.equal(e.field, 'config.rank');
      const missing = failed(await services.dispatch('jobs.startComparison', { model: '/m', adapterIds: [], prompt: 'hi' }));
      assert.equal(missing.field, 'adapterIds');
      const four = failed(await services.dispatch('jobs.startComparison', { model: '/m', adapterIds: ['a', 'b', 'c', 'd'], prompt: 'hi' }));
      assert.equal(four.field, 'adapterIds');
    } finally {
      services.close();
    }
  });

  it('refuses a missing required field and an unknown method', async () => {
    const e = failed(await dispatch('shelf.rename', { id: 'a' }));
    assert.equal(e.field, 'name');
    const unknown = failed(await dispatch('shelf.burn', {}));
    assert.equal(unknown.kind, 'invalid');
    assert.match(unknown.message, /shelf\.burn/);
  });

  it('passes a UserError through as user, and a bug as internal (logged)', async () => {
    const user = failed(await dispatch('shelf.rename', { id: 'user', name: 'n' }));
    assert.deepEqual(user, { kind: 'user', message: 'No adapter user: refresh the shelf.' });
    const internal = failed(await dispatch('shelf.rename', { id: 'bug', name: 'n' }));
    assert.equal(internal.kind, 'internal');
    assert.match(internal.message, /x is undefined/);
    assert.equal(logged.length, 1);
  });

  it('catches an output that drifts from the contract when outputs are checked', async () => {
    const e = failed(await dispatch('shelf.rename', { id: 'drift', name: 'n' }));
    assert.equal(e.kind, 'internal');
    assert.match(e.message, /output does not match the contract at name/);
  });
});

describe('the services behind the contract (real library)', () => {
  let appData: string;
  let services: Services;
  before(() => {
    appData = tempDir();
    services = createServices({ appDataDir: appData, launcher: nodeChildLauncher(), hfCacheDir: path.join(appData, 'no-hf-cache'), dispatch: { checkOutputs: true } });
  });
  after(() => {
    services.close();
    for (const dir of roots) rmSync(dir, { recursive: true, force: true });
  });

  it('binds a handler to every method of the contract', () => {
    assert.deepEqual(Object.keys(services.handlers).sort(), [...API_METHODS].sort());
    assert.equal(API_METHODS.length, Object.keys(API).length);
  });

  it('imports, lists, renames, tags, notes, trashes, restores and empties the trash', async () => {
    const call = async (m: string, input: unknown) => ok(await services.dispatch(m, input));
    const imported = (await call('shelf.import', { folder: GOLDEN_ADAPTER, name: 'golden', baseModel: GOLDEN_MODEL, tags: ['demo'] })) as { id: string; baseFingerprint: string | null };
    assert.ok(imported.baseFingerprint);
    const list = (await call('shelf.list', {})) as Array<{ id: string; name: string }>;
    assert.deepEqual(list.map((a) => a.name), ['golden']);
    assert.equal(((await call('shelf.rename', { id: imported.id, name: 'capitals' })) as { name: string }).name, 'capitals');
    assert.deepEqual(((await call('shelf.setTags', { id: imported.id, tags: ['geo', 'Demo'] })) as { tags: string[] }).tags, ['Demo', 'geo']);
    assert.equal(((await call('shelf.setNotes', { id: imported.id, notes: 'first try' })) as { notes: string }).notes, 'first try');
    assert.deepEqual(((await call('shelf.list', { tags: ['geo'] })) as unknown[]).length, 1);
    assert.deepEqual(((await call('shelf.list', { search: 'nothing-like-this' })) as unknown[]).length, 0);

    const detail = (await call('shelf.get', { id: imported.id })) as { adapter: { name: string }; run: unknown; comparisons: unknown[] };
    assert.equal(detail.adapter.name, 'capitals');
    assert.equal(detail.run, null);

    assert.equal(((await call('shelf.delete', { id: imported.id })) as { state: string }).state, 'trashed');
    assert.equal(((await call('shelf.list', {})) as unknown[]).length, 0);
    assert.equal(((await call('shelf.restore', { id: imported.id })) as { state: string }).state, 'ready');
    await call('shelf.delete', { id: imported.id });
    const emptied = (await call('shelf.emptyTrash', {})) as { adapters: number; freedBytes: number };
    assert.equal(emptied.adapters, 1);
    assert.ok(emptied.freedBytes > 0);
    assert.equal(((await call('shelf.list', { state: 'trashed' })) as unknown[]).length, 0);
  });

  it('reports a missing adapter as the user\'s error, and a bad import folder too', async () => {
    const e = failed(await services.dispatch('shelf.rename', { id: 'no-such-adapter', name: 'x' }));
    assert.equal(e.kind, 'user');
    const bad = failed(await services.dispatch('shelf.import', { folder: path.join(appData, 'nothing-here') }));
    assert.equal(bad.kind, 'user');
  });

  it('exports the PEFT folder whole into a new folder and refuses an existing one', async () => {
    const a = ok(await services.dispatch('shelf.import', { folder: GOLDEN_ADAPTER })) as { id: string };
    const out = path.join(tempDir(), 'exported');
    const r = ok(await services.dispatch('shelf.export', { id: a.id, format: 'peft', to: out })) as { path: string; bytes: number };
    assert.equal(r.path, out);
    assert.deepEqual(readdirSync(out).sort(), readdirSync(GOLDEN_ADAPTER).filter((f) => f.startsWith('adapter_')).sort());
    assert.equal(readdirSync(path.dirname(out)).filter((f) => f.includes('partial')).length, 0);
    const again = failed(await services.dispatch('shelf.export', { id: a.id, format: 'peft', to: out }));
    assert.equal(again.kind, 'user');
    assert.match(again.message, /already exists/);
    const noBase = failed(await services.dispatch('shelf.export', { id: a.id, format: 'merged', to: path.join(tempDir(), 'merged') }));
    assert.match(noBase.message, /base model folder/);
    const merged = ok(await services.dispatch('shelf.export', { id: a.id, format: 'merged', to: path.join(path.dirname(out), 'merged'), baseModel: GOLDEN_MODEL })) as { path: string };
    assert.ok(existsSync(path.join(merged.path, 'config.json')));
    const verified = ok(await services.dispatch('shelf.verify', {})) as { checked: number; problems: unknown[] };
    assert.equal(verified.problems.length, 0);
    assert.ok(verified.checked >= 1);
  });

  it('saves and rates a comparison, and lists it with its adapter', async () => {
    const a = ok(await services.dispatch('shelf.import', { folder: GOLDEN_ADAPTER, name: 'compared' })) as { id: string };
    const saved = ok(await services.dispatch('comparisons.save', {
      title: 'capitals', adapterId: a.id, settings: { seed: 1, temperature: 0 },
      entries: [{ prompt: 'Capital of France?', base: 'Lyon', adapted: 'Paris' }],
    })) as { id: number; entries: Array<{ rating: unknown }> };
    assert.equal(saved.entries[0]?.rating, null);
    const rated = ok(await services.dispatch('comparisons.rate', { id: saved.id, index: 0, rating: 'adapted' })) as { entries: Array<{ rating: unknown }> };
    assert.equal(rated.entries[0]?.rating, 'adapted');
    const bad = failed(await services.dispatch('comparisons.rate', { id: saved.id, index: 0, rating: 'great' }));
    assert.equal(bad.field, 'rating');
    const detail = ok(await services.dispatch('shelf.get', { id: a.id })) as { comparisons: Array<{ id: number }> };
    assert.deepEqual(detail.comparisons.map((c) => c.id), [saved.id]);
  });

  it('answers the system, model, data and estimate calls', async () => {
    const appDataInfo = ok(await services.dispatch('system.appData', {})) as { dir: string; libraryFile: string };
    assert.equal(appDataInfo.dir, path.resolve(appData));
    assert.ok(appDataInfo.libraryFile.startsWith(appDataInfo.dir));
    const capacity = ok(await services.dispatch('system.capacity', {})) as { devices: Array<{ kind: string }>; preferred: number; summary: string[] };
    assert.ok(capacity.devices.some((d) => d.kind === 'cpu'));
    assert.ok(capacity.devices[capacity.preferred]);
    assert.ok(capacity.summary.length >= 1);
    const hw = ok(await services.dispatch('system.hardware', {})) as { cpuThreads: number };
    assert.ok(hw.cpuThreads >= 1);
    const suggested = ok(await services.dispatch('models.suggested', {})) as Array<{ repo: string; fitsLora: boolean | null; local: boolean }>;
    assert.ok(suggested.length >= 1);
    assert.ok(suggested.every((s) => /^[^/]+\/[^/]+$/.test(s.repo) && s.local === false));
    const added = ok(await services.dispatch('models.addFolder', { path: GOLDEN_MODEL })) as { path: string; arch: string };
    assert.equal(added.path, GOLDEN_MODEL);
    const models = ok(await services.dispatch('models.list', {})) as Array<{ path: string }>;
    assert.ok(models.some((m) => m.path === GOLDEN_MODEL));
    const est = ok(await services.dispatch('estimate.estimate', {
      model: 'SmolLM2-135M', device: 'cpu', choices: { method: 'lora', rank: 8, targets: ['q_proj', 'v_proj'], seqLen: 256, batch: 1, checkpointing: true },
    })) as { totalBytes: number; model: { name: string } };
    assert.equal(est.model.name, 'SmolLM2-135M');
    assert.ok(est.totalBytes > 0);
    const fit = ok(await services.dispatch('estimate.fit', { model: 'SmolLM2-135M', device: '4090' })) as { found: boolean };
    assert.equal(fit.found, true);
    const noModel = failed(await services.dispatch('estimate.fit', { model: 'not-a-model-or-folder' }));
    assert.equal(noModel.kind, 'user');
  });
});
