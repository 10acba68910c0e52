// Who may talk to the browser-mode server: a request carrying this launch's
// token, addressed to 127.0.0.1 or localhost. The token is 32 random bytes
// (64 hex characters), new at every launch and never written to disk. The Host
// check stops DNS rebinding: a page on evil.example whose name is re-pointed at
// 127.0.0.1 still sends "Host: evil.example", and is refused.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export function newToken(): string {
  return randomBytes(32).toString('hex');
}

/**
 * Constant-time comparison. Both sides are hashed first, so neither the
 * length of the guess nor where it first differs shows in the timing.
 */
export function tokenMatches(expected: string, given: string | null | undefined): boolean {
  if (typeof given !== 'string' || given.length === 0) return false;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

/** The token of "Authorization: Bearer <token>", or null. */
export function bearerToken(header: string | undefined): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1] ?? null;
}

const LOCAL_NAMES = new Set(['127.0.0.1', 'localhost']);

/** Whether a Host header names this server: 127.0.0.1 or localhost, on our port (or with no port). */
export function hostAllowed(host: string | undefined, port: number): boolean {
  if (!host) return false;
  const m = /^([^:\[\]]+)(?::(\d+))?$/.exec(host.trim().toLowerCase());
  if (!m || !LOCAL_NAMES.has(m[1] ?? '')) return false;
  return m[2] === undefined || Number(m[2]) === port;
}
