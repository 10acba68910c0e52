// Hub downloads against a local server that serves repos the way the Hugging
// Face hub does (helpers/hub-server.ts): listing with LFS checksums, resolve
// redirects to a CDN path, Range requests, gated repos, faults on demand.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { planModelLoad } from '../../engine/model/folder.ts';
import { UserError } from '../../engine/model/errors.ts';
import { createTinyModel } from '../../engine/model/tiny.ts';
import { DOWNLOAD_RECORD, DownloadCancelledError, downloadModel, isWantedFile, type DownloadProgress } from '../../main/models/hub.ts';
import { startHubServer, type HubRepoFile, type HubServer } from './helpers/hub-server.ts';

const REPO = 'tiny-org/Tiny-Llama-Instruct';
const GATED = 'gated-org/Gated-Model';
const TOKEN = 'hf_testtoken123';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let work: string;
let repoFiles: HubRepoFile[];
let weights: Buffer;

async function tempDest(): Promise<string> {
  return mkdtemp(path.join(work, 'dest-'));
}

async function expectUserError(promise: Promise<unknown>, pattern: RegExp, type: new (...a: never[]) => Error = UserError): Promise<Error> {
  const err = await promise.then(
    () => assert.fail('expected the download to be refused'),
    (e: unknown) => e as Error,
  );
  assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
  assert.match(err.message, pattern);
  return err;
}

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lora-studio-hub-'));
  const model = await createTinyModel(path.join(work, 'source'), { arch: 'llama', tokenizer: true, hiddenSize: 64, numLayers: 2 });
  const names = (await readdir(model.dir)).sort();
  repoFiles = await Promise.all(names.map(async (name) => ({ name, content: await readFile(path.join(model.dir, name)) })));
  weights = repoFiles.find((f) => f.name === 'model.safetensors')!.content;
  assert.ok(weights.length > 50_000, `the tiny weights are ${weights.length} bytes`);
  // What a real repo also holds, and the app must not fetch.
  repoFiles.push({ name: 'pytorch_model.bin', content: Buffer.from('pickle bytes'), lfs: true });
  repoFiles.push({ name: 'original/consolidated.00.pth', content: Buffer.from('pickle bytes 2'), lfs: true });
  repoFiles.push({ name: 'README.md', content: Buffer.from('# Tiny\n') });
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('which files are fetched', () => {
  it('takes root-level safetensors weights, JSON and tokenizer files, never pickles or sub-folders', () => {
    for (const name of ['model.safetensors', 'model-00001-of-00004.safetensors', 'config.json', 'tokenizer.json', 'tokenizer.model', 'merges.txt'])
      assert.ok(isWantedFile(name), name);
    for (const name of ['pytorch_model.bin', 'model.pt', 'original/consolidated.00.pth', 'original/params.json', 'consolidated.safetensors', 'README.md'])
      assert.ok(!isWantedFile(name), name);
  });
});

describe('hub download', () => {
  let hub: HubServer;
  before(async () => {
    hub = await startHubServer([{ id: REPO, files: repoFiles }, { id: GATED, files: repoFiles, token: TOKEN }]);
  });
  after(async () => {
    await hub.close();
  });

  it('downloads a repo, verified, into <dest>/<org>--<name>/, and the engine can load it', async () => {
    const dest = await tempDest();
    const events: DownloadProgress[] = [];
    hub.requests.length = 0;
    const result = await downloadModel({ repo: REPO, dest, endpoint: hub.endpoint, onProgress: (p) => events.push(p), progressIntervalMs: 0 });
    assert.equal(result.dir, path.join(dest, 'tiny-org--Tiny-Llama-Instruct'));
    const onDisk = (await readdir(result.dir)).sort();
    const expected = repoFiles.filter((f) => isWantedFile(f.name)).map((f) => f.name);
    assert.deepEqual(onDisk, [DOWNLOAD_RECORD, ...expected].sort());
    assert.ok(!onDisk.some((n) => n.endsWith('.partial') || n.endsWith('.bin')));
    for (const name of expected) {
      const original = repoFiles.find((f) => f.name === name)!.content;
      assert.equal(sha256(await readFile(path.join(result.dir, name))), sha256(original), name);
    }
    // The weights went through the redirect to the CDN path.
    assert.ok(hub.requests.some((r) => r.url.startsWith('/cdn/' + sha256(weights))));
    assert.ok(!hub.requests.some((r) => r.url.includes('pytorch_model.bin') || r.url.includes('consolidated')));
    const plan = await planModelLoad(result.dir);
    assert.equal(plan.config.arch, 'llama');
    // Progress: per file and overall, ending at the total.
    const total = expected.reduce((s, n) => s + repoFiles.find((f) => f.name === n)!.content.length, 0);
    const last = events[events.length - 1]!;
    assert.equal(last.bytesDone, total);
    assert.equal(last.bytesTotal, total);
    assert.equal(last.filesDone, expected.length);
    assert.ok(events.every((e, i) => i === 0 || e.bytesDone >= events[i - 1]!.bytesDone), 'overall progress never goes back');
    assert.ok(events.some((e) => e.file === 'model.safetensors' && e.fileBytesDone === weights.length && e.fileBytesTotal === weights.length));
    assert.ok(last.bytesPerSecond > 0);
    assert.equal(result.bytesDownloaded, total);
    const record = JSON.parse(await readFile(path.join(result.dir, DOWNLOAD_RECORD), 'utf8')) as { repo: string; commit: string };
    assert.equal(record.repo, REPO);
    assert.equal(record.commit, 'c0ffee'.padEnd(40, '0'));

    // A second download finds every file in place and fetches nothing.
    hub.requests.length = 0;
    const again = await downloadModel({ repo: REPO, dest, endpoint: hub.endpoint });
    assert.equal(again.bytesDownloaded, 0);
    assert.ok(!hub.requests.some((r) => r.url.includes('/resolve/') || r.url.startsWith('/cdn/')));
  });

  it('continues a dropped connection with a Range request and ends with the right hash', async () => {
    const dest = await tempDest();
    hub.requests.length = 0;
    hub.faults.dropAfter = { file: 'model.safetensors', bytes: 20_000, times: 2 };
    try {
      const result = await downloadModel({ repo: REPO, dest, endpoint: hub.endpoint });
      assert.equal(sha256(await readFile(path.join(result.dir, 'model.safetensors'))), sha256(weights));
    } finally {
      delete hub.faults.dropAfter;
    }
    const cdn = hub.requests.filter((r) => r.url.startsWith('/cdn/'));
    assert.equal(cdn.length, 3, 'one first try and two continuations');
    assert.equal(cdn[0]!.range, null);
    assert.equal(cdn[1]!.range, 'bytes=20000-');
    assert.equal(cdn[2]!.range, 'bytes=40000-');
  });

  it('continues a .partial file left by an earlier download', async () => {
    const dest = await tempDest();
    const dir = path.join(dest, 'tiny-org--Tiny-Llama-Instruct');
    await rm(dir, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
    await writeFile(path.join(dir, 'model.safetensors.partial'), weights.subarray(0, 12_345));
    hub.requests.length = 0;
    const result = await downloadModel({ repo: REPO, dest, endpoint: hub.endpoint });
    assert.equal(sha256(await readFile(path.join(dir, 'model.safetensors'))), sha256(weights));
    assert.equal(result.bytesDownloaded, result.files.reduce((s, f) => s + f.size, 0) - 12_345);
    assert.equal(hub.requests.find((r) => r.url.startsWith('/cdn/'))!.range, 'bytes=12345-');
  });

  it('starts over when the server ignores the Range request', async () => {
    const dest = await tempDest();
    const dir = path.join(dest, 'tiny-org--Tiny-Llama-Instruct');
    await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
    await writeFile(path.join(dir, 'model.safetensors.partial'), Buffer.alloc(5000, 7)); // not even the right bytes
    hub.faults.ignoreRange = true;
    try {
      await downloadModel({ repo: REPO, dest, endpoint: hub.endpoint });
    } finally {
      delete hub.faults.ignoreRange;
    }
    assert.equal(sha256(await readFile(path.join(dir, 'model.safetensors'))), sha256(weights));
  });

  it('refuses a file whose content does not match the checksum, and removes it', async () => {
    const dest = await tempDest();
    hub.faults.corrupt = 'model.safetensors';
    try {
      await expectUserError(downloadModel({ repo: REPO, dest, endpoint: hub.endpoint }), /model\.safetensors of tiny-org\/Tiny-Llama-Instruct did not match the hub's checksum \(sha256 [0-9a-f]{64}, expected [0-9a-f]{64}\).*removed/);
    } finally {
      delete hub.faults.corrupt;
    }
    const left = await readdir(path.join(dest, 'tiny-org--Tiny-Llama-Instruct'));
    assert.ok(!left.includes('model.safetensors') && !left.includes('model.safetensors.partial'), left.join(', '));
    assert.ok(!left.includes(DOWNLOAD_RECORD));
  });

  it('checks plain git files against their blob id too', async () => {
    const dest = await tempDest();
    hub.faults.corrupt = 'config.json';
    try {
      await expectUserError(downloadModel({ repo: REPO, dest, endpoint: hub.endpoint }), /config\.json .*git blob sha1/);
    } finally {
      delete hub.faults.corrupt;
    }
    assert.ok(!(await readdir(path.join(dest, 'tiny-org--Tiny-Llama-Instruct'))).includes('config.json'));
  });

  it('asks for a token for a gated repo, and sends the token when given', async () => {
    const dest = await tempDest();
    await expectUserError(downloadModel({ repo: GATED, dest, endpoint: hub.endpoint }), /gated-org\/Gated-Model is gated or private.*access token.*Accept the model's licence/);
    await expectUserError(downloadModel({ repo: GATED, dest, endpoint: hub.endpoint, token: 'hf_wrong' }), /refused the access token/);
    hub.requests.length = 0;
    const result = await downloadModel({ repo: GATED, dest, endpoint: hub.endpoint, token: TOKEN });
    assert.equal(sha256(await readFile(path.join(result.dir, 'model.safetensors'))), sha256(weights));
    const toHub = hub.requests.filter((r) => r.url.startsWith('/api/') || r.url.includes('/resolve/'));
    assert.ok(toHub.length > 1);
    assert.ok(toHub.every((r) => r.authorization === `Bearer ${TOKEN}`));
    // The redirect to the CDN's origin does not carry the token.
    const toCdn = hub.requests.filter((r) => r.url.startsWith('/cdn/'));
    assert.ok(toCdn.length > 0 && toCdn.every((r) => r.authorization === null));
  });

  it('refuses before fetching when the disk cannot hold the files', async () => {
    const dest = await tempDest();
    hub.faults.claimSize = { file: 'model.safetensors', bytes: 2 ** 52 }; // 4.5 PB
    hub.requests.length = 0;
    try {
      await expectUserError(downloadModel({ repo: REPO, dest, endpoint: hub.endpoint }), /tiny-org\/Tiny-Llama-Instruct needs 4503599\.\d GB more on the disk of .*, which has [\d.]+ GB free/);
    } finally {
      delete hub.faults.claimSize;
    }
    assert.ok(!hub.requests.some((r) => r.url.includes('/resolve/') || r.url.startsWith('/cdn/')));
  });

  it('names a repo that does not exist and an id that is not one', async () => {
    const dest = await tempDest();
    await expectUserError(downloadModel({ repo: 'nobody/nothing', dest, endpoint: hub.endpoint }), /nobody\/nothing \(revision main\) is not on/);
    await expectUserError(downloadModel({ repo: 'just-a-name', dest, endpoint: hub.endpoint }), /not a Hugging Face model id/);
    await expectUserError(downloadModel({ repo: REPO, dest, endpoint: 'http://127.0.0.1:1' }), /Cannot reach http:\/\/127\.0\.0\.1:1/);
  });

  it('stops when cancelled, keeps the partial file, and a later download continues it', async () => {
    const dest = await tempDest();
    const controller = new AbortController();
    hub.faults.stall = { file: 'model.safetensors', bytes: 30_000 };
    let err: Error;
    try {
      const promise = downloadModel({
        repo: REPO,
        dest,
        endpoint: hub.endpoint,
        signal: controller.signal,
        progressIntervalMs: 0,
        onProgress: (p) => {
          if (p.file === 'model.safetensors' && p.fileBytesDone >= 30_000) controller.abort();
        },
      });
      err = await expectUserError(promise, /download of tiny-org\/Tiny-Llama-Instruct was cancelled/, DownloadCancelledError);
    } finally {
      delete hub.faults.stall;
    }
    assert.ok(err);
    const dir = path.join(dest, 'tiny-org--Tiny-Llama-Instruct');
    assert.equal((await stat(path.join(dir, 'model.safetensors.partial'))).size, 30_000);
    hub.requests.length = 0;
    await downloadModel({ repo: REPO, dest, endpoint: hub.endpoint });
    assert.equal(sha256(await readFile(path.join(dir, 'model.safetensors'))), sha256(weights));
    assert.equal(hub.requests.find((r) => r.url.startsWith('/cdn/'))!.range, 'bytes=30000-');
  });
});

describe('a sharded repo listed without sizes', () => {
  it('reads sizes and checksums from HEAD, then downloads and checks every shard', async () => {
    const model = await createTinyModel(path.join(work, 'sharded'), { arch: 'mistral', tokenizer: true, shards: 3 });
    const files = await Promise.all((await readdir(model.dir)).map(async (name) => ({ name, content: await readFile(path.join(model.dir, name)) })));
    const hub = await startHubServer([{ id: 'shard-org/Sharded', files }], { namesOnly: true });
    try {
      const dest = await tempDest();
      const result = await downloadModel({ repo: 'shard-org/Sharded', dest, endpoint: hub.endpoint });
      assert.equal(result.files.filter((f) => /^model-0000\d-of-00003\.safetensors$/.test(f.name)).length, 3);
      for (const f of result.files) {
        const original = files.find((o) => o.name === f.name)!.content;
        assert.equal(f.size, original.length, f.name);
        if (f.name.endsWith('.safetensors')) assert.equal(f.sha256, sha256(original), f.name);
        else assert.match(f.gitSha1 ?? '', /^[0-9a-f]{40}$/, f.name);
      }
      assert.equal(hub.requests.filter((r) => r.method === 'HEAD').length, files.length);
      assert.equal((await planModelLoad(result.dir)).files.length, 3);

      // With the listing silent, a corrupted shard is still caught by the HEAD checksum.
      hub.faults.corrupt = 'model-00002-of-00003.safetensors';
      await expectUserError(downloadModel({ repo: 'shard-org/Sharded', dest: await tempDest(), endpoint: hub.endpoint }), /model-00002-of-00003\.safetensors of shard-org\/Sharded did not match/);
    } finally {
      await hub.close();
    }
  });
});

describe('a repo without safetensors', () => {
  it('is refused, naming the pickle files', async () => {
    const hub = await startHubServer([{ id: 'old/pickled', files: [{ name: 'config.json', content: Buffer.from('{}') }, { name: 'pytorch_model.bin', content: Buffer.from('x'), lfs: true }] }]);
    try {
      await expectUserError(downloadModel({ repo: 'old/pickled', dest: await tempDest(), endpoint: hub.endpoint }), /no safetensors weights.*pytorch_model\.bin.*never opens/);
    } finally {
      await hub.close();
    }
  });
});
