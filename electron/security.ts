// The window's security settings, as plain values so they can be checked
// without Electron: web preferences, the Content-Security-Policy sent with
// every response, and which URLs may be navigated to or opened outside.

/** The renderer runs with no Node, in a sandbox, isolated from the preload. */
export function secureWebPreferences(preloadPath: string) {
  return {
    preload: preloadPath,
    contextIsolation: true,
    sandbox: true,
    nodeIntegration: false,
    nodeIntegrationInWorker: false,
    nodeIntegrationInSubFrames: false,
    webSecurity: true,
    allowRunningInsecureContent: false,
    webviewTag: false,
    experimentalFeatures: false,
    spellcheck: false,
  } as const;
}

/** Everything comes from the app itself; inline styles are allowed (charts set them), inline scripts are not. */
export const CSP_DIRECTIVES: ReadonlyArray<readonly [string, string]> = [
  ['default-src', "'self'"],
  ['script-src', "'self'"],
  ['connect-src', "'self'"],
  ['style-src', "'self' 'unsafe-inline'"],
  ['img-src', "'self' data:"],
  ['object-src', "'none'"],
  ['base-uri', "'none'"],
  ['form-action', "'none'"],
  ['frame-ancestors', "'none'"],
];

export const CONTENT_SECURITY_POLICY = CSP_DIRECTIVES.map(([name, value]) => `${name} ${value}`).join('; ');

/**
 * Response headers with our policy in place of any the response carried
 * (header names compare case-insensitively, so an existing one of any case is dropped).
 */
export function withContentSecurityPolicy(
  headers: Record<string, string[] | string> | undefined,
): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (name.toLowerCase() === 'content-security-policy') continue;
    out[name] = Array.isArray(value) ? value : [value];
  }
  out['Content-Security-Policy'] = [CONTENT_SECURITY_POLICY];
  return out;
}

function parse(url: string): URL | null {
  try {
    return new URL(url);
  } catch {
    return null;
  }
}

/**
 * Links the user may open in their own browser: http(s) only, no credentials
 * in the URL, a real host name. Anything else (file:, javascript:, custom
 * schemes that would start other programs) is refused.
 */
export function isExternalUrlAllowed(url: string): boolean {
  const u = parse(url);
  if (!u) return false;
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return false;
  if (u.username !== '' || u.password !== '') return false;
  if (u.hostname === '') return false;
  return true;
}

/**
 * The window may only show the renderer page itself (a reload, or a change of
 * its #hash or ?query). rendererUrl is the file: URL of dist/renderer/index.html.
 */
export function isNavigationAllowed(url: string, rendererUrl: string): boolean {
  const target = parse(url);
  const home = parse(rendererUrl);
  if (!target || !home) return false;
  return target.protocol === home.protocol && target.host === home.host && target.pathname === home.pathname;
}
