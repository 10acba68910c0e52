// Data loading for pages: one call, its state (loading / data / error), and a
// reload. Also an event subscription that cleans itself up.
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, type EventChannel, type EventPayload } from './api/client.ts';

export interface Loaded<T> {
  data: T | null;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** Runs load() on mount and whenever deps change; keeps the last good data while reloading. */
export function useLoad<T>(load: () => Promise<T>, deps: readonly unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data: T | null; error: unknown; loading: boolean }>({ data: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true, error: null }));
    load().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error: unknown) => live && setState((s) => ({ data: s.data, error, loading: false })),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** Calls listener for every payload on channel while the component is mounted. */
export function useEvents<C extends EventChannel>(channel: C | null, listener: (payload: EventPayload<C>) => void) {
  const latest = useRef(listener);
  latest.current = listener;
  useEffect(() => {
    if (channel === null) return;
    return api.on(channel, (payload) => latest.current(payload));
  }, [channel]);
}

/** An action button's state: running flag, last error, and a wrapper that sets both. */
export function useAction() {
  const [running, setRunning] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const run = useCallback(async <T,>(action: () => Promise<T>): Promise<T | undefined> => {
    setRunning(true);
    setError(null);
    try {
      return await action();
    } catch (caught) {
      setError(caught);
      return undefined;
    } finally {
      setRunning(false);
    }
  }, []);
  return { running, error, run, clearError: () => setError(null) };
}
