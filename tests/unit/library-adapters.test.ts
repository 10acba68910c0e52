// The adapter store and shelf: importing real PEFT adapter folders, refusing
// broken ones, trash and restore, verifyAdapters, an import killed or aborted
// halfway, recovery at open, and the shelf's queries (base, tags, method,
// search, sort). Real SQLite files and folders in temp dirs; the crash is a
// real child process killed mid-copy.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE } from '../../engine/adapters/peft.ts';
import { ModelLoadError } from '../../engine/model/errors.ts';
import { writeSafetensors, type TensorToWrite } from '../../engine/model/safetensors.ts';
import { createTinyModel } from '../../engine/model/tiny.ts';
import type { AdapterRecord } from '../../main/library/adapters.ts';
import { LibraryError } from '../../main/library/errors.ts';
import { openLibrary, type Library } from '../../main/library/library.ts';

const GOLDEN_MODEL = path.resolve('tests/golden/models/llama_gqa');
const GOLDEN_ADAPTER = path.join(GOLDEN_MODEL, 'adapter');
const LIBRARY_MODULE = path.resolve('main/library/library.ts');

const roots: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lora-studio-shelf-'));
  roots.push(dir);
  return dir;
}
after(() => {
  for (const dir of roots) rmSync(dir, { recursive: true, force: true });
});

// ---- PEFT adapter folders ------------------------------------------------------------

type Proj = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';
// [out, in] of each projection of a Llama-family model.
function projectionShapes(hidden: number, intermediate: number, kvOut: number): Record<Proj, [number, number]> {
  return {
    q_proj: [hidden, hidden], k_proj: [kvOut, hidden], v_proj: [kvOut, hidden], o_proj: [hidden, hidden],
    gate_proj: [intermediate, hidden], up_proj: [intermediate, hidden], down_proj: [hidden, intermediate],
  };
}
const GOLDEN_SHAPES = projectionShapes(64, 160, 32); // tests/golden/models/llama_gqa
const TINY_SHAPES = projectionShapes(64, 128, 32); // createTinyModel's defaults

// Writes a PEFT adapter folder (adapter_config.json as PEFT writes it, F32
// weights with PEFT's key names) for a 2-layer model with `shapes`.
async function writeAdapter(dir: string, opts: { shapes: Record<Proj, [number, number]>; rank: number; alpha: number; targets: Proj[]; baseName?: string }): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const config = JSON.parse(readFileSync(path.join(GOLDEN_ADAPTER, PEFT_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
  Object.assign(config, { r: opts.rank, lora_alpha: opts.alpha, target_modules: [...opts.targets].sort(), base_model_name_or_path: opts.baseName ?? 'tiny' });
  writeFileSync(path.join(dir, PEFT_CONFIG_FILE), JSON.stringify(config, null, 2));
  const tensors: TensorToWrite[] = [];
  for (let layer = 0; layer < 2; ++layer)
    for (const proj of opts.targets) {
      const [out, inp] = opts.shapes[proj];
      const block = proj.startsWith('gate') || proj.startsWith('up') || proj.startsWith('down') ? 'mlp' : 'self_attn';
      const prefix = `base_model.model.model.layers.${layer}.${block}.${proj}`;
      const values = (n: number) => Float32Array.from({ length: n }, (_, i) => ((i * 7 + layer) % 13) * 0.01);
      tensors.push({ name: `${prefix}.lora_A.weight`, dtype: 'F32', shape: [opts.rank, inp], data: values(opts.rank * inp) });
      tensors.push({ name: `${prefix}.lora_B.weight`, dtype: 'F32', shape: [out, opts.rank], data: values(out * opts.rank) });
    }
  await writeSafetensors(path.join(dir, PEFT_WEIGHTS_FILE), tensors, { format: 'pt' });
  return dir;
}

function copyOfGolden(): string {
  const dir = path.join(tempDir(), 'adapter');
  cpSync(GOLDEN_ADAPTER, dir, { recursive: true });
  return dir;
}

// What the store holds on disk, for checks that nothing was left behind.
function storeListing(lib: Library): { adapters: string[]; trash: string[]; tmp: string[] } {
  return { adapters: readdirSync(lib.paths.adapters), trash: readdirSync(lib.paths.trash), tmp: readdirSync(lib.paths.tmp) };
}

async function rejects(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (e) {
    return e as Error;
  }
  assert.fail('expected a rejection');
}

// ---- import ---------------------------------------------------------------------------

describe('adapter import', () => {
  it('copies a real PEFT adapter folder into adapters/<id>/ and records it', async () => {
    const lib = openLibrary(tempDir());
    try {
      const src = copyOfGolden();
      writeFileSync(path.join(src, 'README.md'), '# notes\n');
      mkdirSync(path.join(src, 'checkpoint-10')); // subfolders stay behind
      const a = await lib.importAdapter(src, { name: 'golden', tags: ['chat', 'Chat', ' small '], notes: 'from the golden set' });
      assert.match(a.id, /^[0-9a-f]{16}$/);
      assert.equal(a.state, 'ready');
      assert.equal(a.folder, a.id);
      assert.deepEqual({ rank: a.rank, alpha: a.alpha, rslora: a.rslora, method: a.method, source: a.source }, { rank: 4, alpha: 8, rslora: false, method: 'lora', source: 'imported' });
      assert.deepEqual(a.targets, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
      assert.equal(a.baseModelName, 'llama_gqa');
      assert.deepEqual(a.tags, ['chat', 'small']);
      assert.equal(a.sourcePath, src);

      const folder = lib.adapterFolder(a);
      assert.equal(folder, path.join(lib.paths.adapters, a.id));
      assert.deepEqual(readdirSync(folder).sort(), ['README.md', PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE]);
      for (const f of [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE]) assert.ok(readFileSync(path.join(folder, f)).equals(readFileSync(path.join(src, f))), f);
      const expectedSize = [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, 'README.md'].reduce((n, f) => n + statSync(path.join(src, f)).size, 0);
      assert.equal(a.sizeBytes, expectedSize);
      assert.deepEqual(storeListing(lib), { adapters: [a.id], trash: [], tmp: [] });
      assert.deepEqual(lib.listAdapters().map((x) => x.id), [a.id]);
    } finally {
      lib.close();
    }
  });

  it('refuses a broken adapter folder, naming the file, and leaves nothing behind', async () => {
    const lib = openLibrary(tempDir());
    try {
      const cases: Array<{ why: string; file: string; breakIt: (dir: string) => void }> = [
        { why: 'config not JSON', file: PEFT_CONFIG_FILE, breakIt: (d) => writeFileSync(path.join(d, PEFT_CONFIG_FILE), '{ "r": 4,') },
        { why: 'weights missing', file: PEFT_WEIGHTS_FILE, breakIt: (d) => rmSync(path.join(d, PEFT_WEIGHTS_FILE)) },
        {
          why: 'weights truncated',
          file: PEFT_WEIGHTS_FILE,
          breakIt: (d) => writeFileSync(path.join(d, PEFT_WEIGHTS_FILE), readFileSync(path.join(d, PEFT_WEIGHTS_FILE)).subarray(0, 1000)),
        },
        { why: 'not an adapter folder', file: PEFT_CONFIG_FILE, breakIt: (d) => rmSync(path.join(d, PEFT_CONFIG_FILE)) },
      ];
      for (const c of cases) {
        const src = copyOfGolden();
        c.breakIt(src);
        const err = await rejects(lib.importAdapter(src));
        assert.ok(err instanceof ModelLoadError, `${c.why}: ${String(err)}`);
        assert.ok(err.message.includes(c.file), `${c.why}: ${err.message}`);
        assert.equal(path.basename(err.file ?? ''), c.file, c.why);
      }
      assert.deepEqual(storeListing(lib), { adapters: [], trash: [], tmp: [] });
      assert.deepEqual(lib.listAdapters(), []);
    } finally {
      lib.close();
    }
  });

  it('checks an adapter against the base model it is recorded for', async () => {
    const root = tempDir();
    const lib = openLibrary(path.join(root, 'app'));
    try {
      const golden = await lib.catalog.addBaseModel(GOLDEN_MODEL);
      const tiny = await lib.catalog.addBaseModel((await createTinyModel(path.join(root, 'tiny'), { arch: 'llama' })).dir);
      const a = await lib.importAdapter(copyOfGolden(), { baseModelId: golden.id });
      assert.equal(a.baseFingerprint, golden.fingerprint);
      // The golden adapter's MLP is for intermediate size 160; the tiny model's is 128.
      const err = await rejects(lib.importAdapter(copyOfGolden(), { baseModelId: tiny.id }));
      assert.ok(err instanceof ModelLoadError, String(err));
      assert.match(err.message, /adapter_model\.safetensors/);
      assert.match(err.message, /different base model/);
      const missing = await rejects(lib.importAdapter(copyOfGolden(), { baseModelId: 999 }));
      assert.ok(missing instanceof LibraryError);
      assert.match(missing.message, /no base model 999/);
      assert.deepEqual(storeListing(lib), { adapters: [a.id], trash: [], tmp: [] });
    } finally {
      lib.close();
    }
  });

  it('an import aborted halfway through the copy leaves neither a folder nor a row', async () => {
    const lib = openLibrary(tempDir());
    try {
      const src = await writeAdapter(path.join(tempDir(), 'big'), { shapes: GOLDEN_SHAPES, rank: 512, alpha: 16, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
      const controller = new AbortController();
      let sawTemp = false;
      const err = await rejects(
        lib.importAdapter(src, {}, {
          signal: controller.signal,
          onProgress: (p) => {
            assert.ok(p.copiedBytes < p.totalBytes, 'stopped before the end');
            sawTemp = readdirSync(lib.paths.tmp).length === 1;
            controller.abort();
          },
        }),
      );
      assert.equal(err.name, 'AbortError');
      assert.ok(sawTemp, 'the copy was under way in tmp/');
      assert.deepEqual(storeListing(lib), { adapters: [], trash: [], tmp: [] });
      assert.deepEqual(lib.listAdapters(), []);
    } finally {
      lib.close();
    }
  });

  it('an import process killed halfway through the copy leaves neither a folder in adapters/ nor a row', async () => {
    const appData = tempDir();
    openLibrary(appData).close();
    // A 3.6 MB adapter, copied in 1 MiB chunks.
    const src = await writeAdapter(path.join(tempDir(), 'big'), { shapes: GOLDEN_SHAPES, rank: 512, alpha: 16, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
    // The child blocks inside the first progress report, so it is killed in the
    // middle of the copy, not before or after it.
    const script = `
      import { openLibrary } from ${JSON.stringify(LIBRARY_MODULE)};
      const lib = openLibrary(process.argv[1]);
      let reported = false;
      await lib.importAdapter(process.argv[2], { name: 'big' }, {
        onProgress: (p) => {
          if (reported) return;
          reported = true;
          process.stdout.write('copying ' + p.copiedBytes + ' of ' + p.totalBytes + '\\n');
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000);
        },
      });
      process.stdout.write('finished\\n');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, appData, src], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          stdout += d.toString();
          if (stdout.includes('\n')) resolve();
        });
        child.on('exit', () => reject(new Error(`the import child exited before copying: ${stdout} ${stderr}`)));
      });
      const [, copied, total] = /^copying (\d+) of (\d+)/.exec(stdout) ?? [];
      assert.ok(Number(copied) > 0 && Number(copied) < Number(total), stdout);
      assert.equal(readdirSync(path.join(appData, 'tmp')).length, 1, 'the half copy is in tmp/');
      assert.equal(readdirSync(path.join(appData, 'adapters')).length, 0);
    } finally {
      child.kill('SIGKILL');
    }
    assert.equal(await exited, 'SIGKILL');
    const temp = readdirSync(path.join(appData, 'tmp'));

    assert.equal(readdirSync(path.join(appData, 'adapters')).length, 0, 'no half-copied folder in adapters/');
    const lib = openLibrary(appData);
    try {
      assert.deepEqual(lib.recovery.removedTempFolders, [path.join(appData, 'tmp', temp[0]!)]);
      assert.deepEqual(lib.listAdapters(), [], 'no row');
      assert.deepEqual(lib.listAdapters({ state: 'trashed' }), []);
      assert.deepEqual(storeListing(lib), { adapters: [], trash: [], tmp: [] });
      // The same adapter imports whole afterwards.
      const a = await lib.importAdapter(src, { name: 'big' });
      assert.equal(a.rank, 512);
      assert.equal(a.sizeBytes, readdirSync(src).reduce((n, f) => n + statSync(path.join(src, f)).size, 0));
    } finally {
      lib.close();
    }
  });
});

// ---- trash, verify, recovery ---------------------------------------------------------

describe('adapter trash and checks', () => {
  it('delete moves the folder to trash/, restore brings it back, empty trash removes it', async () => {
    const lib = openLibrary(tempDir());
    try {
      const keep = await lib.importAdapter(copyOfGolden(), { name: 'keep' });
      const a = await lib.importAdapter(copyOfGolden(), { name: 'to delete' });
      const comparison = lib.comparisons.save({ adapterId: a.id, entries: [{ prompt: 'p', base: 'x', adapted: 'y' }] });

      const trashed = lib.deleteAdapter(a.id);
      assert.equal(trashed.state, 'trashed');
      assert.ok(trashed.trashedAt !== null);
      assert.ok(existsSync(path.join(lib.paths.trash, a.folder, PEFT_WEIGHTS_FILE)));
      assert.equal(existsSync(path.join(lib.paths.adapters, a.folder)), false);
      assert.deepEqual(lib.listAdapters().map((x) => x.name), ['keep']);
      assert.deepEqual(lib.listAdapters({ state: 'trashed' }).map((x) => x.name), ['to delete']);

      const restored = lib.restoreAdapter(a.id);
      assert.equal(restored.state, 'ready');
      assert.equal(restored.trashedAt, null);
      assert.ok(existsSync(path.join(lib.paths.adapters, a.folder, PEFT_WEIGHTS_FILE)));
      assert.deepEqual((await lib.verifyAdapters()).problems, []);

      lib.deleteAdapter(a.id);
      const freed = lib.emptyTrash();
      assert.equal(freed.adapters, 1);
      assert.equal(freed.freedBytes, a.sizeBytes);
      assert.deepEqual(storeListing(lib), { adapters: [keep.id], trash: [], tmp: [] });
      assert.deepEqual(lib.listAdapters({ state: 'trashed' }), []);
      assert.throws(() => lib.adapters.get(a.id), /no adapter/);
      // The comparison stays, without its adapter (ON DELETE SET NULL: foreign keys are on).
      assert.equal(lib.comparisons.get(comparison.id).adapterId, null);
    } finally {
      lib.close();
    }
  });

  it('verifyAdapters flags missing and damaged folders without throwing', async () => {
    const lib = openLibrary(tempDir());
    try {
      const ok = await lib.importAdapter(copyOfGolden(), { name: 'fine' });
      const missing = await lib.importAdapter(copyOfGolden(), { name: 'missing' });
      const badHeader = await lib.importAdapter(copyOfGolden(), { name: 'bad header' });
      const badConfig = await lib.importAdapter(copyOfGolden(), { name: 'bad config' });
      const noConfig = await lib.importAdapter(copyOfGolden(), { name: 'no config' });
      rmSync(lib.adapterFolder(missing), { recursive: true });
      const weights = path.join(lib.adapterFolder(badHeader), PEFT_WEIGHTS_FILE);
      const bytes = readFileSync(weights);
      bytes.fill(0x7b, 8, 40); // the JSON header no longer parses
      writeFileSync(weights, bytes);
      writeFileSync(path.join(lib.adapterFolder(badConfig), PEFT_CONFIG_FILE), 'not json');
      rmSync(path.join(lib.adapterFolder(noConfig), PEFT_CONFIG_FILE));

      const report = await lib.verifyAdapters();
      assert.equal(report.checked, 5);
      const byName = new Map(report.problems.map((p) => [p.name, p]));
      assert.deepEqual([...byName.keys()].sort(), ['bad config', 'bad header', 'missing', 'no config']);
      assert.equal(byName.get('missing')?.problem, 'missing');
      assert.equal(byName.get('missing')?.id, missing.id);
      assert.ok(byName.get('missing')?.message.includes(lib.adapterFolder(missing)));
      assert.equal(byName.get('bad header')?.problem, 'damaged');
      assert.match(byName.get('bad header')!.message, /adapter_model\.safetensors/);
      assert.equal(byName.get('bad config')?.problem, 'damaged');
      assert.match(byName.get('bad config')!.message, /adapter_config\.json/);
      assert.match(byName.get('no config')!.message, /adapter_config\.json is missing/);
      assert.equal(report.problems.some((p) => p.id === ok.id), false);
    } finally {
      lib.close();
    }
  });

  it('at open, moves a folder with no row to the trash and lets a row follow its folder', async () => {
    const appData = tempDir();
    let lib = openLibrary(appData);
    const a = await lib.importAdapter(copyOfGolden(), { name: 'moved by hand' });
    const b = await lib.importAdapter(copyOfGolden(), { name: 'trashed, folder back' });
    lib.deleteAdapter(b.id);
    lib.close();
    // A complete folder whose row never committed (a crash between the rename and the commit).
    const orphan = path.join(appData, 'adapters', '00000000deadbeef');
    cpSync(GOLDEN_ADAPTER, orphan, { recursive: true });
    // A row that says ready with its folder in the trash, and the reverse.
    renameSync(path.join(appData, 'adapters', a.folder), path.join(appData, 'trash', a.folder));
    renameSync(path.join(appData, 'trash', b.folder), path.join(appData, 'adapters', b.folder));
    // A folder that is not the store's own is left alone.
    mkdirSync(path.join(appData, 'adapters', 'my notes'));

    lib = openLibrary(appData);
    try {
      const moved = lib.recovery.unlistedMovedToTrash;
      assert.equal(moved.length, 1);
      assert.match(path.basename(moved[0]!), /^unlisted-00000000deadbeef-\d+$/);
      assert.ok(existsSync(path.join(moved[0]!, PEFT_WEIGHTS_FILE)), 'moved whole, not deleted');
      assert.deepEqual(lib.recovery.statesFixed.sort((x, y) => x.state.localeCompare(y.state)), [
        { id: b.id, state: 'ready' },
        { id: a.id, state: 'trashed' },
      ]);
      assert.equal(lib.adapters.get(a.id).state, 'trashed');
      assert.equal(lib.adapters.get(b.id).state, 'ready');
      assert.ok(existsSync(path.join(appData, 'adapters', 'my notes')));
      assert.deepEqual((await lib.verifyAdapters()).problems, []);
      lib.emptyTrash();
      assert.deepEqual(readdirSync(lib.paths.trash), []);
    } finally {
      lib.close();
    }
  });
});

// ---- shelf queries ----------------------------------------------------------------------

describe('shelf queries', () => {
  let lib: Library;
  let golden: string; // fingerprints
  let tiny: string;
  let twin: string; // same shapes as tiny, other weights
  const byName = new Map<string, AdapterRecord>();
  const names = (list: AdapterRecord[]) => list.map((a) => a.name);

  before(async () => {
    const root = tempDir();
    lib = openLibrary(path.join(root, 'app'));
    golden = (await lib.catalog.addBaseModel(GOLDEN_MODEL)).fingerprint;
    const tinyModel = await lib.catalog.addBaseModel((await createTinyModel(path.join(root, 'tiny'), { arch: 'llama', seed: 1 })).dir);
    tiny = tinyModel.fingerprint;
    twin = (await lib.catalog.addBaseModel((await createTinyModel(path.join(root, 'twin'), { arch: 'llama', seed: 2 })).dir)).fingerprint;
    const goldenId = lib.catalog.baseModelByFingerprint(golden)!.id;
    const add = async (name: string, meta: Parameters<Library['importAdapter']>[1], src?: string) =>
      byName.set(name, await lib.importAdapter(src ?? copyOfGolden(), { name, ...meta }));
    // Created in this order, one after another (created_at ascending).
    await add('Alpaca chat', { baseModelId: goldenId, tags: ['chat', 'alpaca'], evalLoss: 1.5, notes: 'Trained on the alpaca set' });
    await add('sql helper', { baseModelId: goldenId, tags: ['sql'], method: 'qlora', evalLoss: 0.9, notes: 'answers in SQL' },
      await writeAdapter(path.join(root, 'sql'), { shapes: GOLDEN_SHAPES, rank: 8, alpha: 16, targets: ['q_proj', 'v_proj'] }));
    await add('story writer', { baseModelId: tinyModel.id, tags: ['CHAT', 'stories'], notes: 'long 100% _fun_ tales' },
      await writeAdapter(path.join(root, 'story'), { shapes: TINY_SHAPES, rank: 2, alpha: 4, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] }));
    await add('zeta', { evalLoss: 2.5 });
  });
  after(() => lib.close());

  it('fingerprints a base model by its weights: equal files match, other weights of the same shapes do not', async () => {
    assert.notEqual(golden, tiny);
    assert.notEqual(tiny, twin, 'two checkpoints with identical headers');
    const copy = path.join(tempDir(), 'moved');
    cpSync(GOLDEN_MODEL, copy, { recursive: true });
    const again = await lib.catalog.addBaseModel(copy);
    assert.equal(again.fingerprint, golden);
    assert.equal(again.path, copy, 'the same model found elsewhere updates its path');
    assert.equal(lib.catalog.listBaseModels().length, 3);
  });

  it('offers adapters only for their base model', () => {
    assert.deepEqual(names(lib.adaptersForBase(golden)), ['sql helper', 'Alpaca chat']);
    assert.deepEqual(names(lib.adaptersForBase(tiny)), ['story writer']);
    assert.deepEqual(lib.adaptersForBase(twin), []);
    assert.deepEqual(names(lib.adaptersForBase(golden, { method: 'qlora' })), ['sql helper']);
  });

  it('filters by tags (every tag, any case) and by method', () => {
    assert.deepEqual(names(lib.listAdapters({ tags: ['chat'], sort: 'name' })), ['Alpaca chat', 'story writer']);
    assert.deepEqual(names(lib.listAdapters({ tags: ['Chat', 'ALPACA'] })), ['Alpaca chat']);
    assert.deepEqual(names(lib.listAdapters({ tags: ['chat', 'sql'] })), []);
    assert.deepEqual(names(lib.listAdapters({ method: 'qlora' })), ['sql helper']);
    assert.deepEqual(lib.adapters.tagSummary(), [
      { tag: 'alpaca', count: 1 }, { tag: 'CHAT', count: 2 }, { tag: 'sql', count: 1 }, { tag: 'stories', count: 1 },
    ]);
  });

  it('searches names, notes and tags, every word, with % and _ taken literally', () => {
    assert.deepEqual(names(lib.listAdapters({ search: 'alpaca' })), ['Alpaca chat']);
    assert.deepEqual(names(lib.listAdapters({ search: 'sql' })), ['sql helper']);
    assert.deepEqual(names(lib.listAdapters({ search: 'STORIES' })), ['story writer']);
    assert.deepEqual(names(lib.listAdapters({ search: '100%' })), ['story writer']);
    assert.deepEqual(names(lib.listAdapters({ search: '_fun_' })), ['story writer']);
    assert.deepEqual(names(lib.listAdapters({ search: '%' })), ['story writer']);
    assert.deepEqual(names(lib.listAdapters({ search: 'trained alpaca' })), ['Alpaca chat']);
    assert.deepEqual(names(lib.listAdapters({ search: 'trained sql' })), []);
    assert.deepEqual(names(lib.listAdapters({ search: '  ', sort: 'name' })).length, 4);
  });

  it('sorts by name, creation, eval loss (unknown last), size and rank', () => {
    assert.deepEqual(names(lib.listAdapters({ sort: 'name' })), ['Alpaca chat', 'sql helper', 'story writer', 'zeta']);
    assert.deepEqual(names(lib.listAdapters({ sort: 'name', direction: 'desc' })), ['zeta', 'story writer', 'sql helper', 'Alpaca chat']);
    assert.deepEqual(names(lib.listAdapters()), ['zeta', 'story writer', 'sql helper', 'Alpaca chat']);
    assert.deepEqual(names(lib.listAdapters({ sort: 'created', direction: 'asc' })), ['Alpaca chat', 'sql helper', 'story writer', 'zeta']);
    assert.deepEqual(names(lib.listAdapters({ sort: 'evalLoss' })), ['sql helper', 'Alpaca chat', 'zeta', 'story writer']);
    assert.deepEqual(names(lib.listAdapters({ sort: 'evalLoss', direction: 'desc' })), ['zeta', 'Alpaca chat', 'sql helper', 'story writer']);
    const bySize = lib.listAdapters({ sort: 'size' });
    for (let i = 1; i < bySize.length; ++i) assert.ok(bySize[i - 1]!.sizeBytes <= bySize[i]!.sizeBytes);
    assert.deepEqual(lib.listAdapters({ sort: 'rank', direction: 'desc' }).map((a) => a.rank), [8, 4, 4, 2]);
  });

  it('renames, tags and annotates, and refuses what is not valid', () => {
    const id = byName.get('zeta')!.id;
    assert.equal(lib.adapters.rename(id, '  Omega  ').name, 'Omega');
    assert.deepEqual(lib.adapters.addTag(id, 'new').tags, ['new']);
    assert.deepEqual(lib.adapters.addTag(id, 'NEW').tags, ['new']);
    assert.deepEqual(lib.adapters.setTags(id, ['b', 'a']).tags, ['a', 'b']);
    assert.deepEqual(lib.adapters.removeTag(id, 'A').tags, ['b']);
    assert.equal(lib.adapters.setNotes(id, 'best so far').notes, 'best so far');
    assert.deepEqual(names(lib.listAdapters({ search: 'omega best', tags: ['b'] })), ['Omega']);
    assert.throws(() => lib.adapters.rename(id, '   '), (e: Error) => e instanceof LibraryError && /adapter name/.test(e.message) && /empty/.test(e.message));
    assert.throws(() => lib.adapters.setTags(id, ['x'.repeat(65)]), /tags is not valid/);
    assert.throws(() => lib.adapters.rename('ffffffffffffffff', 'x'), /no adapter "ffffffffffffffff"/);
    assert.throws(() => lib.listAdapters({ sort: 'colour' as never }), /adapter query is not valid: sort/);
  });

  it('keeps trashed adapters out of every ready list', () => {
    const id = byName.get('sql helper')!.id;
    lib.deleteAdapter(id);
    assert.deepEqual(names(lib.adaptersForBase(golden)), ['Alpaca chat']);
    assert.deepEqual(names(lib.listAdapters({ search: 'sql' })), []);
    assert.deepEqual(names(lib.listAdapters({ state: 'trashed' })), ['sql helper']);
    lib.restoreAdapter(id);
    assert.deepEqual(names(lib.adaptersForBase(golden)), ['sql helper', 'Alpaca chat']);
  });
});
