// The one way the UI talks to the backend, typed by main/api/contract.ts
// (types only: nothing from main/ is bundled). Which transport carries the
// call (Electron's preload bridge or browser mode's HTTP + WebSocket) is
// decided once, at load; pages only see api.call / api.on.
import type { ApiInput, ApiMethod, ApiOutput, EventChannel, EventPayload } from '../../main/api/contract.ts';
import { detectTransport, type Transport } from './transport.ts';

export { ApiError } from './transport.ts';
export type * from '../../main/api/contract.ts';

const transport: Transport = detectTransport();

export const api = {
  mode: transport.mode,
  call<M extends ApiMethod>(method: M, input: ApiInput<M>): Promise<ApiOutput<M>> {
    return transport.call(method, input) as Promise<ApiOutput<M>>;
  },
  /** Payloads arrive as the backend validated them against the contract's event schemas. */
  on<C extends EventChannel>(channel: C, listener: (payload: EventPayload<C>) => void): () => void {
    return transport.on(channel, listener as (payload: unknown) => void);
  },
};
