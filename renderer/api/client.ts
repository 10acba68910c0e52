// The one way the UI talks to the backend. Which transport carries the call
// (Electron's preload bridge or browser mode's HTTP + WebSocket) is decided
// once, at load; pages only see api.call / api.on.
import { detectTransport, type Transport } from './transport.ts';

export { ApiError } from './transport.ts';

const transport: Transport = detectTransport();

export const api = {
  mode: transport.mode,
  call<T>(method: string, input: unknown = {}): Promise<T> {
    return transport.call(method, input) as Promise<T>;
  },
  on(channel: string, listener: (payload: unknown) => void): () => void {
    return transport.on(channel, listener);
  },
};
