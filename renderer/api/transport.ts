// The two ways the UI reaches the backend, behind one shape:
//   Electron: the preload's window.loraStudio bridge (call / on).
//   Browser mode: HTTP POST /api/<method> with a bearer token, events over one
//   WebSocket /events?token=<token> carrying { channel, payload } frames.
// The token comes from the page URL (?token=...), printed by the web server at
// launch; it is kept in sessionStorage so a reload of a bare URL still works.

export type ErrorKind = 'user' | 'internal' | 'invalid' | 'network' | 'auth';

/** An error the UI can show as is: message says what happened and what to do. */
export class ApiError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export type Listener = (payload: unknown) => void;

export interface Transport {
  readonly mode: 'electron' | 'browser';
  call(method: string, input: unknown): Promise<unknown>;
  /** Subscribe to an event channel; returns the unsubscribe function. */
  on(channel: string, listener: Listener): () => void;
}

/** The object electron/preload.ts exposes; nothing else crosses the bridge. */
export interface LoraStudioBridge {
  call(method: string, input: unknown): Promise<unknown>;
  on(channel: string, listener: Listener): () => void;
  platform: string;
}

declare global {
  interface Window {
    loraStudio?: LoraStudioBridge;
  }
}

const TOKEN_KEY = 'lora-studio-token';

/** The token from ?token= in the page URL, else the one kept from earlier in this tab. */
export function readToken(location: Location, storage: Storage | null): string | null {
  const fromUrl = new URLSearchParams(location.search).get('token');
  if (fromUrl) {
    storage?.setItem(TOKEN_KEY, fromUrl);
    return fromUrl;
  }
  return storage?.getItem(TOKEN_KEY) ?? null;
}

function electronTransport(bridge: LoraStudioBridge): Transport {
  return {
    mode: 'electron',
    async call(method, input) {
      try {
        return await bridge.call(method, input);
      } catch (error) {
        // Errors thrown in main arrive as plain Errors; the message carries the text.
        throw toApiError(error);
      }
    },
    on: (channel, listener) => bridge.on(channel, listener),
  };
}

function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const anyError = error as { kind?: unknown; message?: unknown; field?: unknown } | null;
  const kind = anyError?.kind === 'user' || anyError?.kind === 'invalid' ? anyError.kind : 'internal';
  const message = typeof anyError?.message === 'string' ? anyError.message : String(error);
  return new ApiError(kind, message, typeof anyError?.field === 'string' ? anyError.field : undefined);
}

/** Browser mode: origin is the server's http(s) origin, token the per-launch secret. */
export function browserTransport(origin: string, token: string | null): Transport {
  const listeners = new Map<string, Set<Listener>>();
  let socket: WebSocket | null = null;
  let retryMs = 500;

  function connect() {
    if (socket || token === null) return;
    const url = new URL('/events', origin);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('token', token);
    const ws = new WebSocket(url);
    socket = ws;
    ws.onopen = () => {
      retryMs = 500;
    };
    ws.onmessage = (message) => {
      let frame: { channel?: unknown; payload?: unknown };
      try {
        frame = JSON.parse(String(message.data));
      } catch {
        return;
      }
      if (typeof frame.channel !== 'string') return;
      for (const listener of listeners.get(frame.channel) ?? []) listener(frame.payload);
    };
    ws.onclose = () => {
      socket = null;
      // Reconnect while anyone listens; back off up to 10 s so a stopped server is not hammered.
      if (listeners.size > 0) {
        setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, 10_000);
      }
    };
  }

  return {
    mode: 'browser',
    async call(method, input) {
      if (token === null) {
        throw new ApiError('auth', 'This page was opened without its access token. Open the full address that `npm run web` printed (it ends in ?token=…).');
      }
      let response: Response;
      try {
        response = await fetch(new URL(`/api/${method}`, origin), {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify(input ?? {}),
        });
      } catch {
        throw new ApiError('network', 'Cannot reach LoRA Studio’s server. Check that `npm run web` is still running, then try again.');
      }
      const text = await response.text();
      let body: unknown = null;
      try {
        body = text ? JSON.parse(text) : null;
      } catch {
        // Not JSON: a static file server or a proxy answered instead of the api.
      }
      if (response.ok) return body;
      const error = (body as { error?: { kind?: string; message?: string; field?: string } } | null)?.error;
      if (response.status === 401 || response.status === 403) {
        throw new ApiError('auth', error?.message ?? 'The access token was refused. Open the address that `npm run web` printed most recently.');
      }
      if (error?.message) throw toApiError(error);
      throw new ApiError('network', `The server answered ${response.status} ${response.statusText} to ${method}. Check that this page is served by \`npm run web\`.`);
    },
    on(channel, listener) {
      let set = listeners.get(channel);
      if (!set) listeners.set(channel, (set = new Set()));
      set.add(listener);
      connect();
      return () => {
        set.delete(listener);
        if (set.size === 0) listeners.delete(channel);
        if (listeners.size === 0 && socket) {
          socket.onclose = null;
          socket.close();
          socket = null;
        }
      };
    },
  };
}

/** Electron when the preload bridge exists, else browser mode against the page's own origin. */
export function detectTransport(win: Window = window): Transport {
  if (win.loraStudio) return electronTransport(win.loraStudio);
  let storage: Storage | null = null;
  try {
    storage = win.sessionStorage;
  } catch {
    // Storage can be disabled; the token then lives only in the URL.
  }
  return browserTransport(win.location.origin, readToken(win.location, storage));
}
