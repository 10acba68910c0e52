// The one object the preload puts on window: window.loraStudio. Types only
// here, so the renderer can declare it too without importing anything that runs.
import type { DispatchResult } from '../main/api/dispatch.ts';
import type { ApiInput, ApiMethod, ApiOutput, EventChannel, EventPayload } from '../main/api/contract.ts';

/** What the main process answers on the 'api' channel: never a rejection, so the error's kind and field survive IPC. */
export type ApiReply = DispatchResult;

export interface LoraStudioBridge {
  /** Resolves with the call's output; rejects with an ApiError-shaped object { kind, message, field? }. */
  call<M extends ApiMethod>(method: M, input: ApiInput<M>): Promise<ApiOutput<M>>;
  /** Listens to one event channel; returns the function that stops listening. */
  on<C extends EventChannel>(channel: C, listener: (payload: EventPayload<C>) => void): () => void;
  /** process.platform of the machine: 'win32', 'darwin', 'linux', ... */
  platform: string;
}
