// The preload bridge: exposes exactly one object, window.loraStudio
// (bridge.ts), and reaches exactly two IPC channels (channels.ts). The
// renderer never sees ipcRenderer or an IPC event (event.sender would let it
// reach every channel). Runs sandboxed, so it is bundled to one CommonJS file
// that requires nothing but 'electron'.
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';
import { API_CHANNEL, EVENT_CHANNEL, type EventEnvelope } from './channels.ts';
import type { ApiReply, LoraStudioBridge } from './bridge.ts';

type Listener = (payload: unknown) => void;
const listeners = new Map<string, Set<Listener>>();

ipcRenderer.on(EVENT_CHANNEL, (_event: IpcRendererEvent, envelope: EventEnvelope) => {
  const set = listeners.get(envelope.channel);
  if (!set) return;
  for (const listener of [...set]) listener(envelope.payload);
});

const bridge: LoraStudioBridge = {
  async call(method, input) {
    if (typeof method !== 'string') throw { kind: 'invalid', message: 'The api method must be a string.' };
    const reply = (await ipcRenderer.invoke(API_CHANNEL, method, input)) as ApiReply;
    if (reply.ok) return reply.output as never;
    throw reply.error;
  },
  on(channel, listener) {
    if (typeof channel !== 'string' || typeof listener !== 'function') {
      throw new TypeError('loraStudio.on(channel, listener): channel is a string, listener a function.');
    }
    const l = listener as Listener;
    let set = listeners.get(channel);
    if (!set) listeners.set(channel, (set = new Set()));
    set.add(l);
    return () => {
      set.delete(l);
    };
  },
  platform: process.platform,
};

contextBridge.exposeInMainWorld('loraStudio', bridge);
