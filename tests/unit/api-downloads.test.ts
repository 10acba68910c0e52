// Hub downloads through the API (models.startDownload and the 'download'
// events) against the local hub server (helpers/hub-server.ts): a gated repo
// is refused without a token and downloads with one; the token reaches the hub
// and nothing else (events, the library's files, logs); progress carries the
// speed. Every output and event is checked against the contract's schemas.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTinyModel } from '../../engine/model/tiny.ts';
import { API, DownloadSchema, type Download } from '../../main/api/contract.ts';
import type { DispatchResult } from '../../main/api/dispatch.ts';
import { nodeChildLauncher } from '../../main/jobs/child-launcher.ts';
import { createServices, type Services } from '../../main/services.ts';
import { startHubServer, type HubRepoFile, type HubServer } from './helpers/hub-server.ts';

const GATED = 'gated-org/Tiny-Gated';
const TOKEN = 'hf_apitesttoken_5f3a9c';

function ok(r: DispatchResult): unknown {
  if (!r.ok) assert.fail(`expected success, got ${r.error.kind}: ${r.error.message}`);
  return r.output;
}

/** Every file under dir, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? filesUnder(p) : [p];
  });
}

describe('models.startDownload with a hub token', () => {
  let temp: string;
  let hub: HubServer;
  let services: Services;
  const events: Download[] = [];
  const logged: string[] = [];
  const consoleMethods = ['log', 'info', 'warn', 'error', 'debug'] as const;
  const originalConsole = consoleMethods.map((m) => console[m]);

  before(async () => {
    temp = mkdtempSync(path.join(os.tmpdir(), 'lora-studio-api-downloads-'));
    const model = await createTinyModel(path.join(temp, 'source'), { arch: 'llama', tokenizer: true });
    const files: HubRepoFile[] = readdirSync(model.dir).map((name) => ({ name, content: readFileSync(path.join(model.dir, name)) }));
    hub = await startHubServer([{ id: GATED, files, token: TOKEN }]);
    // Whatever the backend writes to the console is kept, to look for the token in it.
    consoleMethods.forEach((m) => {
      console[m] = (...args: unknown[]) => logged.push(args.map(String).join(' '));
    });
    services = createServices({
      appDataDir: path.join(temp, 'app-data'),
      launcher: nodeChildLauncher(),
      hfCacheDir: path.join(temp, 'empty-hf-cache'),
      hubEndpoint: hub.endpoint,
      dispatch: { checkOutputs: true, log: (message, error) => logged.push(`${message} ${String(error)}`) },
    });
    services.events.on('download', (d) => events.push(DownloadSchema.parse(d)));
  });

  after(async () => {
    consoleMethods.forEach((m, i) => {
      console[m] = originalConsole[i]!;
    });
    services?.close();
    await hub?.close();
    if (temp) rmSync(temp, { recursive: true, force: true });
  });

  /** Starts a download and waits for its last event (done, failed or cancelled). */
  async function download(input: { repo: string; token?: string }): Promise<{ started: Download; last: Download }> {
    const started = DownloadSchema.parse(ok(await services.dispatch('models.startDownload', input)));
    const deadline = Date.now() + 60_000;
    for (;;) {
      const last = events.filter((e) => e.downloadId === started.downloadId).at(-1);
      if (last && ['done', 'failed', 'cancelled'].includes(last.status)) return { started, last };
      if (Date.now() > deadline) assert.fail(`the download of ${input.repo} did not end in a minute; last status ${last?.status}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('takes an optional token and refuses an empty one, naming the field', async () => {
    assert.ok(API['models.startDownload'].input.safeParse({ repo: GATED }).success);
    const empty = await services.dispatch('models.startDownload', { repo: GATED, token: '  ' });
    assert.equal(empty.ok, false);
    if (!empty.ok) {
      assert.equal(empty.error.kind, 'invalid');
      assert.equal(empty.error.field, 'token');
    }
  });

  it('fails a gated repo without a token, saying a token is needed', async () => {
    const { last } = await download({ repo: GATED });
    assert.equal(last.status, 'failed');
    assert.match(last.error ?? '', /gated or private.*access token/);
  });

  it('downloads the gated repo with the token, with speed in the progress; the token goes to the hub only', async () => {
    hub.requests.length = 0;
    const { started, last } = await download({ repo: GATED, token: TOKEN });
    assert.equal(started.bytesPerSecond, null);
    assert.equal(last.status, 'done', last.error ?? '');
    const dir = last.path;
    assert.ok(dir && existsSync(path.join(dir, 'model.safetensors')));
    assert.equal(path.dirname(dir), path.join(temp, 'app-data', 'models'));

    // Progress: bytes and a positive speed while downloading.
    const progress = events.filter((e) => e.downloadId === started.downloadId && e.status === 'downloading' && e.bytesDone > 0);
    assert.ok(progress.length > 0, 'progress events arrived');
    assert.ok(progress.every((e) => e.bytesPerSecond !== null && e.bytesPerSecond > 0));

    // The hub's own requests carried the token as a bearer token.
    const hubCalls = hub.requests.filter((r) => r.url.startsWith('/api/models/') || r.url.includes('/resolve/'));
    assert.ok(hubCalls.length > 0);
    for (const r of hubCalls) assert.equal(r.authorization, `Bearer ${TOKEN}`, r.url);

    // The model is in the catalogue, as a download.
    const models = ok(await services.dispatch('models.list', {})) as { path: string; source: string }[];
    assert.deepEqual(models.filter((m) => m.path === dir).map((m) => m.source), ['download']);

    // Nowhere else: not in any event, the list of downloads, the app data folder (library, WAL, records) or the logs.
    assert.ok(!JSON.stringify(events).includes(TOKEN));
    assert.ok(!JSON.stringify(ok(await services.dispatch('models.downloads', {}))).includes(TOKEN));
    const appFiles = filesUnder(path.join(temp, 'app-data')).filter((f) => statSync(f).size > 0);
    assert.ok(appFiles.some((f) => f.endsWith('library.sqlite')));
    for (const file of appFiles) assert.ok(!readFileSync(file).includes(TOKEN), `${file} holds the token`);
    assert.ok(!logged.some((line) => line.includes(TOKEN)), 'the token was logged');
  });
});
