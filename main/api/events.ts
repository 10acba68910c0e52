// The backend's event bus: every event the UI can subscribe to, typed by the
// contract's channels. Services emit; each transport (the WebSocket in browser
// mode, the preload bridge in Electron) subscribes and forwards.
import type { EventChannel, EventMessage, EventPayload } from './contract.ts';

export type EventListener = (message: EventMessage) => void;

export class ApiEvents {
  private readonly listeners = new Set<EventListener>();

  emit<C extends EventChannel>(channel: C, payload: EventPayload<C>): void {
    const message = { channel, payload } as EventMessage;
    for (const listener of [...this.listeners]) {
      try {
        listener(message);
      } catch (err) {
        // A broken subscriber must not stop the others or the emitting service.
        console.error(`An event listener failed on channel ${channel}`, err);
      }
    }
  }

  /** Every message on every channel; returns the unsubscribe function. */
  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** One channel's payloads; returns the unsubscribe function. */
  on<C extends EventChannel>(channel: C, listener: (payload: EventPayload<C>) => void): () => void {
    return this.subscribe((m) => {
      if (m.channel === channel) listener(m.payload as EventPayload<C>);
    });
  }
}
