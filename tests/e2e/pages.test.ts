// The renderer without a backend: every page renders, the api client sends the
// page's ?token= as a bearer token (and keeps it across a reload), and a page
// whose calls fail says what happened and what to do instead of breaking.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { buildRenderer, collectPageErrors, launchBrowser, screenshot, serveStatic, skipWithoutChromium } from './harness.ts';

describe('renderer pages without a backend', { skip: skipWithoutChromium }, () => {
  let browser: Browser;
  let server: Awaited<ReturnType<typeof serveStatic>>;

  before(async () => {
    buildRenderer();
    server = await serveStatic();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  test('without a token, a page says to open the address the server printed', async () => {
    const page = await browser.newPage();
    const errors = collectPageErrors(page);
    await page.goto(`${server.url}#/system`);
    const alert = page.getByRole('alert').first();
    await alert.waitFor();
    assert.match(await alert.innerText(), /without its access token/);
    assert.match(await alert.innerText(), /npm run web/);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('with ?token=, calls carry it as a bearer token, also after a reload without it', async () => {
    const page = await browser.newPage();
    const seen: { url: string; auth: string | undefined; body: string | null }[] = [];
    page.on('request', (request) => {
      if (request.url().includes('/api/')) seen.push({ url: request.url(), auth: request.headers()['authorization'], body: request.postData() });
    });
    await page.goto(`${server.url}?token=secret-123#/settings`);
    await page.getByRole('alert').first().waitFor();
    const appData = seen.find((r) => r.url.endsWith('/api/system.appData'));
    assert.ok(appData, `no system.appData call among ${seen.map((r) => r.url).join(', ')}`);
    assert.equal(appData.auth, 'Bearer secret-123');
    assert.equal(appData.body, '{}');

    seen.length = 0;
    await page.goto(`${server.url}#/system`);
    await page.getByRole('alert').first().waitFor();
    assert.ok(seen.length > 0);
    for (const request of seen) assert.equal(request.auth, 'Bearer secret-123', request.url);
    await page.close();
  });

  test('a server that is not the api (404, not JSON) is reported with what to check', async () => {
    const page = await browser.newPage();
    await page.goto(`${server.url}?token=t#/shelf`);
    const alert = page.getByRole('alert').first();
    await alert.waitFor();
    const text = await alert.innerText();
    assert.match(text, /404/);
    assert.match(text, /shelf\.list/);
    assert.match(text, /npm run web/);
    // A retry button is offered and calls again.
    let calls = 0;
    page.on('request', (r) => void (r.url().includes('/api/shelf.list') && calls++));
    await page.getByRole('button', { name: 'Try again' }).first().click();
    await page.waitForTimeout(300);
    assert.ok(calls >= 1);
    await page.close();
  });

  test('a stopped server is reported as not connected', async () => {
    const stopped = await serveStatic();
    const page = await browser.newPage();
    await page.goto(`${stopped.url}?token=t#/wizard`);
    await page.getByRole('heading', { name: 'New adapter' }).waitFor();
    await stopped.close();
    await page.evaluate(() => {
      window.location.hash = '#/settings';
    });
    const alert = page.getByRole('alert').first();
    await alert.waitFor();
    assert.match(await alert.innerText(), /Not connected|Cannot reach/);
    await page.close();
  });

  test('every page renders from the sidebar and by keyboard, in light and dark', async () => {
    for (const scheme of ['light', 'dark'] as const) {
      const context = await browser.newContext({ colorScheme: scheme, viewport: { width: 1280, height: 860 } });
      const page = await context.newPage();
      const errors = collectPageErrors(page);
      await page.goto(`${server.url}?token=t`);
      for (const [label, heading] of [
        ['New adapter', 'New adapter'],
        ['Shelf', 'Shelf'],
        ['Compare', 'Compare'],
        ['This computer', 'This computer'],
        ['Settings', 'Settings'],
      ] as const) {
        await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: label }).click();
        await page.getByRole('heading', { level: 1, name: heading }).waitFor();
        assert.equal(await page.getByRole('link', { name: label }).getAttribute('aria-current'), 'page');
        await page.getByRole('alert').first().waitFor();
        await screenshot(page, `static-${scheme}-${label.toLowerCase().replace(/ /g, '-')}`);
      }
      // Keyboard: on a fresh load the first Tab reaches the sidebar, Enter opens the page.
      await page.goto('about:blank');
      await page.goto(`${server.url}?token=t#/settings`);
      await page.getByRole('heading', { level: 1, name: 'Settings' }).waitFor();
      await page.keyboard.press('Tab');
      const focused = await page.evaluate(() => document.activeElement?.textContent ?? '');
      assert.match(focused, /New adapter/);
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { level: 1, name: 'New adapter' }).waitFor();
      const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      assert.equal(lightness(background) < 0.3, scheme === 'dark', `${scheme} background expected, got ${background}`);
      assert.deepEqual(errors, []);
      await context.close();
    }
  });
});

/** Lightness in [0, 1] of a computed CSS colour: oklch(L …) as is, rgb(r, g, b) as the channel mean. */
function lightness(color: string): number {
  const numbers = (color.match(/[\d.]+/g) ?? []).map(Number);
  if (color.startsWith('oklch')) return numbers[0] ?? 0;
  return ((numbers[0] ?? 0) + (numbers[1] ?? 0) + (numbers[2] ?? 0)) / 3 / 255;
}
