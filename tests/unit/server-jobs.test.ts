// A training run driven the way the browser drives it: started with
// POST /api/jobs.startTraining, followed over the WebSocket until it
// completes, then read back (loss series, adapter on the shelf). A tiny model
// and real engine child processes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { createTinyModel } from '../../engine/model/tiny.ts';
import { nodeChildLauncher } from '../../main/jobs/child-launcher.ts';
import { startWebServer, type WebServer } from '../../main/server/server.ts';
import { createServices, type Services } from '../../main/services.ts';
import { CAPITALS } from './helpers/jobs-fixtures.ts';

describe('a training job over browser mode', () => {
  let dir: string;
  let model: string;
  let services: Services;
  let server: WebServer;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'lora-studio-web-jobs-'));
    model = path.join(dir, 'model');
    await createTinyModel(model, { arch: 'llama', tokenizer: true, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 2, numKvHeads: 1, seed: 5, initStd: 0.25 });
    services = createServices({ appDataDir: path.join(dir, 'app'), launcher: nodeChildLauncher({ onStderr: () => {} }), dispatch: { checkOutputs: true } });
    server = await startWebServer({ dispatch: services.dispatch, events: services.events, rendererDir: path.join(dir, 'none') });
  });
  after(async () => {
    await server.close();
    services.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const call = async (method: string, input: unknown) => {
    const res = await fetch(`http://127.0.0.1:${server.port}/api/${method}`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${server.token}` }, body: JSON.stringify(input),
    });
    const body = (await res.json()) as Record<string, unknown>;
    assert.equal(res.status, 200, JSON.stringify(body));
    return body;
  };

  it('streams step events and the final status, then shows the series and the adapter', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/events?token=${server.token}`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const messages: Array<{ channel: string; payload: { type: string; jobId: string; event?: { type: string }; job?: { status: string } } }> = [];
    const finished = new Promise<string>((resolve) => {
      ws.on('message', (data) => {
        const m = JSON.parse(String(data));
        messages.push(m);
        const status = m.payload?.job?.status;
        if (m.channel === 'job' && m.payload.type === 'status' && ['completed', 'failed', 'cancelled'].includes(status)) resolve(status);
      });
    });
    const job = (await call('jobs.startTraining', {
      name: 'capitals', config: { model, data: CAPITALS, rank: 2, alpha: 4, seqLen: 64, batchSize: 2, steps: 3, lr: 1e-2, evalSplit: 0.05 },
    })) as { id: string; status: string };
    assert.ok(['queued', 'running'].includes(job.status));
    assert.equal(await finished, 'completed');
    ws.close();

    const steps = messages.filter((m) => m.channel === 'job' && m.payload.jobId === job.id && m.payload.event?.type === 'step');
    assert.equal(steps.length, 3);
    const detail = (await call('jobs.get', { jobId: job.id })) as { job: { status: string; adapterId: string | null }; series: { train: unknown[] } };
    assert.equal(detail.job.status, 'completed');
    assert.equal(detail.series.train.length, 3);
    assert.ok(detail.job.adapterId);
    const shelf = (await call('shelf.list', {})) as unknown as Array<{ id: string; runId: number | null }>;
    assert.deepEqual(shelf.map((a) => a.id), [detail.job.adapterId]);
    const listed = (await call('jobs.list', {})) as unknown as Array<{ id: string }>;
    assert.deepEqual(listed.map((j) => j.id), [job.id]);
  });
});
