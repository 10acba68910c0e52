// The two IPC channels between the window and the main process. The preload
// reaches only these: one invoke channel for every api call, one channel that
// carries every api event as { channel, payload }.
export const API_CHANNEL = 'api';
export const EVENT_CHANNEL = 'api:event';

/** What travels on EVENT_CHANNEL: the api's event channel name and its payload. */
export interface EventEnvelope {
  channel: string;
  payload: unknown;
}
