// Local model folders and the Hugging Face cache scan, on real tiny models and
// a fake cache tree laid out as huggingface_hub writes it (blobs, symlinked
// snapshots, refs), with broken links, downloads in progress and models the
// engine does not train.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ModelLoadError, UserError } from '../../engine/model/errors.ts';
import { createTinyModel } from '../../engine/model/tiny.ts';
import { describeBaseModel } from '../../main/library/fingerprint.ts';
import { hfCacheDir, repoFromCacheFolder, scanHfCache } from '../../main/models/hf-cache.ts';
import { describeLocalModel } from '../../main/models/local.ts';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lora-studio-models-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('a local model folder', () => {
  it('is described with architecture, parameter count, dtype, sizes and the shelf fingerprint', async () => {
    const model = await createTinyModel(path.join(work, 'qwen'), { arch: 'qwen2', tokenizer: true, hiddenSize: 64, intermediateSize: 128, numLayers: 3, tie: false });
    const facts = await describeLocalModel(model.dir);
    const H = 64, I = 128, L = 3, V = facts.vocabSize, D = 16, K = 2;
    // embed + lm_head + final norm; per layer: 2 norms, q,o [H,H], k,v [K·D,H], q/k/v biases, gate/up/down.
    const perLayer = 2 * H + 2 * H * H + 2 * K * D * H + H + 2 * K * D + 3 * H * I;
    assert.equal(facts.parameterCount, 2 * V * H + H + L * perLayer);
    assert.equal(facts.architecture, 'qwen2');
    assert.equal(facts.dtype, 'BF16');
    assert.equal(facts.layers, 3);
    assert.equal(facts.name, 'qwen');
    assert.ok(facts.hasTokenizer && facts.hasChatTemplate);
    assert.ok(facts.weightBytes > facts.parameterCount * 2 && facts.weightBytes < facts.parameterCount * 2 + 64 * 1024);
    assert.ok(facts.diskBytes > facts.weightBytes);
    assert.equal(facts.fingerprint, (await describeBaseModel(model.dir)).fingerprint);
    assert.equal((await describeLocalModel(model.dir, { fingerprint: false, name: 'Qwen tiny' })).fingerprint, null);
  });

  it('reports a float32 model without tokenizer as such', async () => {
    const model = await createTinyModel(path.join(work, 'f32'), { arch: 'llama', dtype: 'F32' });
    const facts = await describeLocalModel(model.dir);
    assert.equal(facts.dtype, 'F32');
    assert.equal(facts.hasTokenizer, false);
    assert.equal(facts.hasChatTemplate, false);
  });

  it('passes the engine refusals through as UserErrors naming the file', async () => {
    const dir = path.join(work, 'pickled');
    await mkdir(dir);
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 10 }));
    await writeFile(path.join(dir, 'pytorch_model.bin'), 'not opened');
    const err = await describeLocalModel(dir).then(() => assert.fail('expected a refusal'), (e: unknown) => e as Error);
    assert.ok(err instanceof ModelLoadError && err instanceof UserError);
    assert.match(err.message, /pytorch_model\.bin.*never opens pickle files/);
    await assert.rejects(describeLocalModel(path.join(work, 'absent')), (e: unknown) => e instanceof UserError && /does not exist/.test((e as Error).message));
  });
});

describe('Hugging Face cache location', () => {
  it('follows HF_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME, then ~/.cache', () => {
    assert.equal(hfCacheDir({ HF_HUB_CACHE: '/data/hub', HF_HOME: '/x' }), path.resolve('/data/hub'));
    assert.equal(hfCacheDir({ HUGGINGFACE_HUB_CACHE: '/old/hub' }), path.resolve('/old/hub'));
    assert.equal(hfCacheDir({ HF_HOME: '/data/hf' }), path.resolve('/data/hf/hub'));
    assert.equal(hfCacheDir({ XDG_CACHE_HOME: '/xdg' }), path.resolve('/xdg/huggingface/hub'));
    assert.equal(hfCacheDir({}), path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
    assert.equal(hfCacheDir({ HF_HUB_CACHE: '' , HF_HOME: '~/hf' }), path.join(os.homedir(), 'hf', 'hub'));
  });

  it('reads repo ids from cache folder names', () => {
    assert.equal(repoFromCacheFolder('models--Qwen--Qwen2.5-0.5B-Instruct'), 'Qwen/Qwen2.5-0.5B-Instruct');
    assert.equal(repoFromCacheFolder('models--gpt2'), 'gpt2');
    assert.equal(repoFromCacheFolder('datasets--org--data'), null);
  });
});

describe('Hugging Face cache scan', () => {
  const COMMIT_NEW = 'a'.repeat(40);
  const COMMIT_OLD = 'b'.repeat(40);
  let cache: string;

  // Puts a folder's files into <repoDir>/blobs by content hash and links them from snapshots/<commit>.
  async function addSnapshot(repoDir: string, commit: string, files: Record<string, Buffer>, opts: { missing?: string[] } = {}) {
    const blobs = path.join(repoDir, 'blobs');
    const snap = path.join(repoDir, 'snapshots', commit);
    await mkdir(blobs, { recursive: true });
    await mkdir(snap, { recursive: true });
    for (const [name, content] of Object.entries(files)) {
      const hash = createHash('sha256').update(content).digest('hex');
      if (opts.missing?.includes(name)) await writeFile(path.join(blobs, `${hash}.incomplete`), content.subarray(0, 10));
      else await writeFile(path.join(blobs, hash), content);
      await symlink(path.join('..', '..', 'blobs', hash), path.join(snap, name));
    }
  }
  async function filesOf(dir: string): Promise<Record<string, Buffer>> {
    const out: Record<string, Buffer> = {};
    for (const name of await readdir(dir)) out[name] = await readFile(path.join(dir, name));
    return out;
  }

  before(async () => {
    cache = path.join(work, 'hf-home', 'hub');
    const good = await createTinyModel(path.join(work, 'src-good'), { arch: 'llama', tokenizer: true, seed: 1 });
    const older = await createTinyModel(path.join(work, 'src-older'), { arch: 'llama', tokenizer: true, seed: 2 });
    const repo = path.join(cache, 'models--tiny-org--Tiny-Chat');
    await addSnapshot(repo, COMMIT_OLD, await filesOf(older.dir));
    await addSnapshot(repo, COMMIT_NEW, await filesOf(good.dir));
    await mkdir(path.join(repo, 'refs'), { recursive: true });
    await writeFile(path.join(repo, 'refs', 'main'), COMMIT_NEW);

    // Interrupted download: the weights' blob is still .incomplete, so the link is broken.
    await addSnapshot(path.join(cache, 'models--half-org--Half'), COMMIT_NEW, await filesOf(good.dir), { missing: ['model.safetensors'] });
    // An architecture the engine does not train.
    const gpt2 = await createTinyModel(path.join(work, 'src-gpt2'), { arch: 'llama', configOverrides: { model_type: 'gpt2' } });
    await addSnapshot(path.join(cache, 'models--other-org--gpt-like'), COMMIT_NEW, await filesOf(gpt2.dir));
    // Pickle weights only.
    await addSnapshot(path.join(cache, 'models--old-org--Pickled'), COMMIT_NEW, { 'config.json': Buffer.from('{"model_type":"llama"}'), 'pytorch_model.bin': Buffer.from('x') });
    // No snapshot at all, a dataset, and a stray file.
    await mkdir(path.join(cache, 'models--empty-org--Empty', 'blobs'), { recursive: true });
    await mkdir(path.join(cache, 'datasets--data-org--data', 'snapshots'), { recursive: true });
    await writeFile(path.join(cache, 'version.txt'), '1');
  });

  it('lists usable snapshots and reports the rest without throwing', async () => {
    const scan = await scanHfCache({ env: { HF_HOME: path.join(work, 'hf-home') } });
    assert.equal(scan.cacheDir, cache);
    assert.equal(scan.exists, true);
    assert.deepEqual(scan.models.map((m) => [m.repo, m.commit, m.refs]), [
      ['tiny-org/Tiny-Chat', COMMIT_NEW, ['main']],
      ['tiny-org/Tiny-Chat', COMMIT_OLD, []],
    ]);
    const main = scan.models[0]!;
    assert.equal(main.model.path, path.join(cache, 'models--tiny-org--Tiny-Chat', 'snapshots', COMMIT_NEW));
    assert.equal(main.model.name, 'tiny-org/Tiny-Chat');
    assert.equal(main.model.architecture, 'llama');
    assert.ok(main.model.hasChatTemplate);
    assert.equal(main.model.fingerprint, null);

    const byRepo = new Map(scan.problems.map((p) => [p.repo, p]));
    assert.deepEqual([...byRepo.keys()].sort(), ['empty-org/Empty', 'half-org/Half', 'old-org/Pickled', 'other-org/gpt-like']);
    assert.equal(byRepo.get('half-org/Half')!.kind, 'incomplete');
    assert.match(byRepo.get('half-org/Half')!.message, /model\.safetensors points at a file missing from the cache \(a download is in progress or was interrupted\)/);
    assert.equal(byRepo.get('other-org/gpt-like')!.kind, 'unsupported');
    assert.match(byRepo.get('other-org/gpt-like')!.message, /gpt2/);
    assert.equal(byRepo.get('old-org/Pickled')!.kind, 'unsupported');
    assert.equal(byRepo.get('empty-org/Empty')!.kind, 'incomplete');
  });

  it('fingerprints cached models when asked, the same way as the shelf', async () => {
    const scan = await scanHfCache({ cacheDir: cache, fingerprint: true });
    const main = scan.models[0]!;
    assert.equal(main.model.fingerprint, (await describeBaseModel(main.model.path)).fingerprint);
    assert.notEqual(main.model.fingerprint, scan.models[1]!.model.fingerprint);
  });

  it('finds nothing, without failing, where there is no cache', async () => {
    const scan = await scanHfCache({ env: { HF_HUB_CACHE: path.join(work, 'nowhere') } });
    assert.deepEqual(scan, { cacheDir: path.join(work, 'nowhere'), exists: false, models: [], problems: [] });
  });
});
