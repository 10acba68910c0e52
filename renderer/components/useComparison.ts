// A streamed comparison: base and up to three adapters answer one prompt with
// the same seed; tokens arrive on the 'compare' channel per side ('base' or an
// adapter id). Events are kept per job from the moment the hook mounts, so the
// first tokens are not lost if they arrive before jobs.startComparison returns.
import { useRef, useState } from 'react';
import { api } from '../api/client.ts';
import { useEvents } from '../hooks.ts';

export interface SideOutput {
  text: string;
  done: boolean;
  generatedTokens: number | null;
  seconds: number | null;
}

export interface ComparisonRun {
  jobId: string | null;
  sides: Record<string, SideOutput>;
  error: string | null;
  running: boolean;
}

type Buffer = { sides: Record<string, SideOutput>; error: string | null };

export function useComparison() {
  const buffers = useRef(new Map<string, Buffer>());
  const [jobId, setJobId] = useState<string | null>(null);
  const [expected, setExpected] = useState<string[]>([]);
  const [startError, setStartError] = useState<unknown>(null);
  const [starting, setStarting] = useState(false);
  const [, rerender] = useState(0);

  useEvents('compare', (event) => {
    let buffer = buffers.current.get(event.jobId);
    if (!buffer) buffers.current.set(event.jobId, (buffer = { sides: {}, error: null }));
    if (event.type === 'error') buffer.error = event.message;
    else if (event.type === 'token') {
      const side = buffer.sides[event.side] ?? { text: '', done: false, generatedTokens: null, seconds: null };
      buffer.sides[event.side] = { ...side, text: side.text + event.text };
    } else {
      const side = buffer.sides[event.side] ?? { text: '', done: false, generatedTokens: null, seconds: null };
      buffer.sides[event.side] = { ...side, done: true, generatedTokens: event.generatedTokens ?? null, seconds: event.seconds ?? null };
    }
    rerender((n) => n + 1);
  });

  async function start(model: string, adapterIds: string[], prompt: string, seed: number, maxTokens: number) {
    setStartError(null);
    setStarting(true);
    setExpected(['base', ...adapterIds]);
    try {
      const job = await api.call('jobs.startComparison', { model, adapterIds, prompt, sampling: { seed, maxTokens } });
      setJobId(job.id);
    } catch (error) {
      setStartError(error);
    } finally {
      setStarting(false);
    }
  }

  const buffer = jobId ? buffers.current.get(jobId) : undefined;
  const sides = buffer?.sides ?? {};
  const finished = expected.every((side) => sides[side]?.done) || buffer?.error != null;
  return {
    start,
    jobId,
    sides,
    error: startError ?? (buffer?.error ? new Error(buffer.error) : null),
    running: starting || (jobId !== null && !finished),
    finished: jobId !== null && finished,
  };
}
