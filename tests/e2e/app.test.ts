// The whole app in browser mode, driven like a person would: the real
// services (shelf, jobs with engine child processes, models, estimate) behind
// the real HTTP + WebSocket server, the built renderer in headless Chromium.
// Makes its tiny models with the `lora-studio make-tiny-model` command, walks
// the wizard with the demo's capitals data, trains a few steps, evaluates base
// vs adapted, saves to the shelf, deletes the adapter to the trash and restores
// it, compares, pauses and resumes a second run, and takes a screenshot of
// every page and of the trash.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { nodeChildLauncher } from '../../main/jobs/child-launcher.ts';
import { startWebServer, type WebServer } from '../../main/server/server.ts';
import { createServices, type Services } from '../../main/services.ts';
import { buildRenderer, collectPageErrors, launchBrowser, rendererDist, repoRoot, screenshot, skipWithoutChromium } from './harness.ts';

const CAPITALS = join(repoRoot, 'assets', 'demo', 'capitals.jsonl');
/** Training and generation on two shared cores: generous, never a timing assertion. */
const SLOW = 180_000;

/** `lora-studio make-tiny-model <dir> [flags]` in a child process, as a person would type it. */
async function makeTinyModel(dir: string, flags: string[] = []): Promise<void> {
  const { stdout } = await promisify(execFile)(process.execPath, [join(repoRoot, 'bin', 'lora-studio.mjs'), 'make-tiny-model', dir, ...flags], { cwd: repoRoot });
  assert.match(stdout, /Wrote a tiny llama model/);
}

describe('the app in browser mode', { skip: skipWithoutChromium }, () => {
  let temp: string;
  let modelDir: string;
  /** Wider and deeper (~1 s per step here), so a run of a few steps is still running when Pause is clicked. */
  let slowModelDir: string;
  let services: Services;
  let server: WebServer;
  let browser: Browser;
  let page: Page;
  let pageErrors: string[];

  before(async () => {
    buildRenderer();
    temp = mkdtempSync(join(tmpdir(), 'lora-studio-e2e-'));
    modelDir = join(temp, 'tiny-llama');
    slowModelDir = join(temp, 'wider-llama');
    await makeTinyModel(modelDir);
    await makeTinyModel(slowModelDir, ['--hidden-size', '512', '--intermediate-size', '1536', '--layers', '6', '--heads', '8', '--kv-heads', '4']);
    services = createServices({ appDataDir: join(temp, 'app-data'), launcher: nodeChildLauncher(), hfCacheDir: join(temp, 'empty-hf-cache') });
    server = await startWebServer({ dispatch: services.dispatch, events: services.events, rendererDir: rendererDist });
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    pageErrors = collectPageErrors(page);
    page.setDefaultTimeout(30_000);
  });

  after(async () => {
    await browser?.close();
    await server?.close();
    services?.close();
    if (temp) rmSync(temp, { recursive: true, force: true });
  });

  test('the wizard: model, data, method, train, evaluate, save', { timeout: 6 * SLOW }, async () => {
    await page.goto(`${server.url}#/wizard`);
    await page.getByRole('heading', { level: 1, name: 'New adapter' }).waitFor();

    // 1. Base model: an empty list at first, then the tiny model's folder.
    await page.getByTestId('empty-state').waitFor();
    await screenshot(page, 'wizard-1-model-empty');
    // Gated models take a hub token, typed into a password field.
    assert.equal(await page.getByLabel('Hugging Face token (for gated models)').getAttribute('type'), 'password');
    await page.getByLabel('Folder path').fill(join(temp, 'no-such-folder'));
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await page.getByRole('alert').filter({ hasText: 'no-such-folder' }).waitFor();
    await page.getByLabel('Folder path').fill(modelDir);
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    const chosen = page.getByRole('radio', { checked: true });
    await chosen.waitFor();
    assert.match(await chosen.innerText(), /tiny-llama/);
    await screenshot(page, 'wizard-1-model');
    await page.getByRole('button', { name: 'Next →' }).click();

    // 2. Data: the inspect report and the first example with trained text highlighted.
    await page.getByTestId('wizard-step-2').waitFor();
    await page.getByLabel('Data file').fill(CAPITALS);
    await page.getByRole('button', { name: 'Check data' }).click();
    const report = page.getByTestId('data-report');
    await report.waitFor({ timeout: SLOW });
    assert.match(await report.innerText(), /chat/);
    assert.match(await page.getByTestId('trained-spans').locator('mark').first().innerText(), /capital/);
    assert.equal(await page.getByTestId('rendered-example').count(), 3, 'the first three examples are shown');
    await screenshot(page, 'wizard-2-data');
    await page.getByRole('button', { name: 'Next →' }).click();

    // 3. Method: the estimate answers and changes with the fields.
    await page.getByTestId('wizard-step-3').waitFor();
    const bar = page.getByTestId('memory-bar');
    await bar.waitFor({ timeout: SLOW });
    const before = await bar.locator('span').first().innerText();
    await page.getByText('Advanced settings').click();
    await page.getByRole('spinbutton', { name: 'Steps' }).fill('4');
    await page.getByLabel('Sequence length').fill('2048');
    await page.waitForFunction((text) => document.querySelector('[data-testid=memory-bar] span')?.textContent !== text, before, { timeout: SLOW });
    await page.getByLabel('Sequence length').fill('128');
    await page.getByLabel('Batch size').fill('4');
    await page.waitForFunction(() => !document.querySelector('[role=status]'), null, { timeout: SLOW });
    assert.equal(await bar.getAttribute('data-fits'), 'true');
    await screenshot(page, 'wizard-3-method');
    await page.getByRole('button', { name: 'Next →' }).click();

    // 4. Train: a few steps, live, until the adapter is on the shelf.
    await page.getByTestId('wizard-step-4').waitFor();
    await screenshot(page, 'wizard-4-ready');
    await page.getByRole('button', { name: /Start training/ }).click();
    await page.locator('[data-testid=job-status][data-status=completed]').waitFor({ timeout: SLOW });
    await page.getByTestId('loss-chart').waitFor();
    assert.match(await page.getByText(/Step 4 of 4/).innerText(), /Step 4 of 4/);
    await screenshot(page, 'wizard-4-train');
    const next = page.getByRole('button', { name: 'Next →' });
    await page.waitForFunction(() => ![...document.querySelectorAll('button')].find((b) => b.textContent?.includes('Next'))?.hasAttribute('disabled'), null, { timeout: SLOW });
    await next.click();

    // 5. Evaluate: base and adapted stream side by side, then a blind rating.
    await page.getByTestId('wizard-step-5').waitFor();
    await page.getByLabel('Prompt').fill('What is the capital of France?');
    await page.getByLabel('Blind A/B').check();
    await page.getByRole('button', { name: 'Compare' }).click();
    await page.getByRole('button', { name: 'A is better' }).waitFor({ timeout: SLOW });
    const columns = page.getByTestId('stream-columns').locator('article');
    assert.equal(await columns.count(), 2);
    assert.deepEqual(await columns.locator('header span').first().innerText(), 'Answer A');
    await screenshot(page, 'wizard-5-evaluate-blind');
    await page.getByRole('button', { name: 'A is better' }).click();
    await page.getByText(/You chose:/).waitFor();
    assert.match(await columns.first().locator('header span').first().innerText(), /Base model/);
    await screenshot(page, 'wizard-5-evaluate');
    await page.getByRole('button', { name: 'Next →' }).click();

    // 6. Save: name and tags, then the adapter's own page.
    await page.getByTestId('wizard-step-6').waitFor();
    await page.getByLabel('Name').fill('Capitals (e2e)');
    await page.getByLabel('Tags').fill('capitals, e2e');
    await screenshot(page, 'wizard-6-save');
    await page.getByRole('button', { name: /Save and open/ }).click();
    await page.getByRole('heading', { level: 1, name: 'Capitals (e2e)' }).waitFor();
    await page.getByTestId('run-config').waitFor();
    await screenshot(page, 'adapter');
  });

  test('the shelf lists the adapter with its tags; list, grid and filters', { timeout: SLOW }, async () => {
    await page.goto(`${server.url}#/shelf`);
    const table = page.getByTestId('shelf-table');
    await table.waitFor();
    assert.match(await table.innerText(), /Capitals \(e2e\)/);
    assert.match(await table.innerText(), /capitals/);
    assert.match(await table.innerText(), /capitals\.jsonl/, 'the dataset column names the data file');
    await screenshot(page, 'shelf-list');
    await page.getByRole('button', { name: 'Grid' }).click();
    await page.getByTestId('shelf-grid').waitFor();
    await screenshot(page, 'shelf-grid');
    await page.getByLabel('Method').selectOption('qlora');
    await page.getByText('No adapter matches these filters').waitFor();
    await page.getByLabel('Method').selectOption('lora');
    await page.getByLabel('Tag').selectOption('e2e');
    await page.getByTestId('shelf-grid').waitFor();
    assert.match(await page.getByTestId('shelf-grid').innerText(), /Capitals \(e2e\)/);
  });

  test('delete to the trash and restore, by clicking', { timeout: SLOW }, async () => {
    await page.goto(`${server.url}#/shelf`);
    await page.getByLabel('Tag').selectOption('');
    await page.getByLabel('Method').selectOption('');
    await page.getByRole('button', { name: 'List' }).click();
    const table = page.getByTestId('shelf-table');
    await table.waitFor();
    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByRole('button', { name: 'Delete Capitals (e2e)' }).click();
    await page.getByText('Your shelf is empty').waitFor();

    await page.getByRole('button', { name: 'Trash', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Trash' }).waitFor();
    await table.waitFor();
    assert.match(await table.innerText(), /Capitals \(e2e\)/);
    await screenshot(page, 'shelf-trash');
    await page.getByRole('button', { name: 'Restore Capitals (e2e)' }).click();
    await page.getByText('The trash is empty').waitFor();

    await page.getByRole('button', { name: '← Back to the shelf' }).click();
    await page.getByRole('heading', { level: 1, name: 'Shelf' }).waitFor();
    await table.waitFor();
    assert.match(await table.innerText(), /Capitals \(e2e\)/);
    await page.getByRole('link', { name: 'Capitals (e2e)' }).click();
    await page.getByRole('heading', { level: 1, name: 'Capitals (e2e)' }).waitFor();
    assert.equal(await page.getByText('In the trash').count(), 0);
  });

  test('compare: the base and the adapter on one prompt, streamed', { timeout: SLOW }, async () => {
    await page.goto(`${server.url}#/compare`);
    await page.getByRole('heading', { level: 1, name: 'Compare' }).waitFor();
    await page.getByLabel('Capitals (e2e)').check();
    await page.getByLabel('Prompt').fill('What is the capital of Peru?');
    await page.getByRole('button', { name: 'Compare' }).click();
    await page.waitForFunction(() => {
      const sides = [...document.querySelectorAll('[data-testid=stream-columns] article')];
      return sides.length === 2 && sides.every((s) => s.getAttribute('data-done') === 'true');
    }, null, { timeout: SLOW });
    const texts = await page.getByTestId('stream-text').allInnerTexts();
    assert.equal(texts.length, 2);
    for (const text of texts) assert.ok(text.length > 0, 'each side wrote something');
    await screenshot(page, 'compare');
  });

  test('pause and resume: the run stops with a checkpoint, then continues to the end', { timeout: 4 * SLOW }, async () => {
    await page.goto(`${server.url}#/wizard`);
    await page.getByTestId('wizard-step-1').waitFor();
    await page.getByLabel('Folder path').fill(slowModelDir);
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await page.getByRole('radio', { checked: true }).filter({ hasText: 'wider-llama' }).waitFor();
    await page.getByRole('button', { name: 'Next →' }).click();
    await page.getByLabel('Data file').fill(CAPITALS);
    await page.getByRole('button', { name: 'Check data' }).click();
    await page.getByTestId('data-report').waitFor({ timeout: SLOW });
    await page.getByRole('button', { name: 'Next →' }).click();
    await page.getByText('Advanced settings').click();
    await page.getByRole('spinbutton', { name: 'Steps' }).fill('6');
    await page.getByLabel('Sequence length').fill('128');
    await page.locator('[data-testid=memory-bar][data-fits=true]').waitFor({ timeout: SLOW });
    await page.getByRole('button', { name: 'Next →' }).click();

    await page.getByRole('button', { name: /Start training/ }).click();
    // Pause once a step has finished, so there is a step to checkpoint.
    await page.getByText(/Step [1-5] of 6/).waitFor({ timeout: SLOW });
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.locator('[data-testid=job-status][data-status=paused]').waitFor({ timeout: SLOW });
    const checkpoint = await page.getByTestId('job-checkpoint').innerText();
    assert.match(checkpoint, /checkpoint of step [1-5]: .*step-0+[1-5]\b/);
    await screenshot(page, 'wizard-4-paused');

    await page.getByRole('button', { name: 'Resume' }).click();
    await page.locator('[data-testid=job-status][data-status=completed]').waitFor({ timeout: SLOW });
    await page.getByText('Step 6 of 6').waitFor();
    assert.equal(await page.getByTestId('job-checkpoint').count(), 0);
    await screenshot(page, 'wizard-4-resumed');
  });

  test('this computer and settings show the machine and the app data folder', async () => {
    await page.goto(`${server.url}#/system`);
    await page.getByTestId('capacity').waitFor({ timeout: SLOW });
    await screenshot(page, 'system');
    await page.goto(`${server.url}#/settings`);
    assert.equal(await page.getByTestId('app-data-dir').innerText(), join(temp, 'app-data'));
    await screenshot(page, 'settings');
    assert.deepEqual(pageErrors, []);
  });
});
