// The window's security settings, checked as values (the Electron binary cannot run here).
import assert from 'node:assert/strict';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import {
  CONTENT_SECURITY_POLICY, isExternalUrlAllowed, isNavigationAllowed, secureWebPreferences, withContentSecurityPolicy,
} from '../../electron/security.ts';

test('web preferences isolate and sandbox the renderer, with no Node and web security on', () => {
  const prefs = secureWebPreferences('/app/dist/electron/preload.cjs');
  assert.equal(prefs.preload, '/app/dist/electron/preload.cjs');
  assert.equal(prefs.contextIsolation, true);
  assert.equal(prefs.sandbox, true);
  assert.equal(prefs.nodeIntegration, false);
  assert.equal(prefs.nodeIntegrationInWorker, false);
  assert.equal(prefs.nodeIntegrationInSubFrames, false);
  assert.equal(prefs.webSecurity, true);
  assert.equal(prefs.allowRunningInsecureContent, false);
  assert.equal(prefs.webviewTag, false);
});

test('the Content-Security-Policy allows only the app itself', () => {
  const directives = new Map(
    CONTENT_SECURITY_POLICY.split(';').map((d) => {
      const [name, ...values] = d.trim().split(/\s+/);
      return [name ?? '', values.join(' ')] as const;
    }),
  );
  assert.equal(directives.get('default-src'), "'self'");
  assert.equal(directives.get('script-src'), "'self'");
  assert.equal(directives.get('connect-src'), "'self'");
  assert.equal(directives.get('style-src'), "'self' 'unsafe-inline'");
  assert.equal(directives.get('img-src'), "'self' data:");
  assert.equal(directives.get('object-src'), "'none'");
  assert.ok(!/unsafe-eval/.test(CONTENT_SECURITY_POLICY), 'no eval');
  assert.ok(!/script-src[^;]*unsafe-inline/.test(CONTENT_SECURITY_POLICY), 'no inline scripts');
});

test('every response gets our policy in place of its own, other headers kept', () => {
  const out = withContentSecurityPolicy({
    'content-security-policy': ["default-src *"],
    'Content-Type': ['text/html'],
    'X-Single': 'one',
  });
  assert.deepEqual(out['Content-Security-Policy'], [CONTENT_SECURITY_POLICY]);
  assert.equal(out['content-security-policy'], undefined);
  assert.deepEqual(out['Content-Type'], ['text/html']);
  assert.deepEqual(out['X-Single'], ['one']);
  assert.deepEqual(withContentSecurityPolicy(undefined), { 'Content-Security-Policy': [CONTENT_SECURITY_POLICY] });
});

test('only http(s) links with a host and no credentials open outside the app', () => {
  assert.equal(isExternalUrlAllowed('https://huggingface.co/Qwen/Qwen2.5-0.5B'), true);
  assert.equal(isExternalUrlAllowed('http://localhost:8080/docs'), true);
  for (const url of [
    'file:///etc/passwd',
    'javascript:alert(1)',
    'smb://server/share',
    'ms-settings:privacy',
    'https://user:secret@example.com/',
    'data:text/html,<script>1</script>',
    'not a url',
    '',
  ]) {
    assert.equal(isExternalUrlAllowed(url), false, url);
  }
});

test('the window may only show the renderer page itself', () => {
  const home = pathToFileURL('/opt/LoRA Studio/resources/app.asar/dist/renderer/index.html').href;
  assert.equal(isNavigationAllowed(home, home), true);
  assert.equal(isNavigationAllowed(`${home}#/shelf`, home), true);
  assert.equal(isNavigationAllowed(`${home}?page=2`, home), true);
  assert.equal(isNavigationAllowed(pathToFileURL('/etc/passwd').href, home), false);
  assert.equal(isNavigationAllowed(pathToFileURL('/opt/LoRA Studio/resources/app.asar/dist/renderer/other.html').href, home), false);
  assert.equal(isNavigationAllowed('https://example.com/', home), false);
  assert.equal(isNavigationAllowed('garbage', home), false);
});
