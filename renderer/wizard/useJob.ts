// A training job as the UI follows it: the job record, the loss series, the
// latest step's speed and memory, and samples. Loaded once with jobs.get, then
// kept current from 'job' events; events for the job that arrive before its id
// is known are not lost because the loaded detail already includes them.
import { useEffect, useState } from 'react';
import { api, type Job, type TrainEventPayload } from '../api/client.ts';
import { useEvents } from '../hooks.ts';

export interface JobView {
  job: Job | null;
  train: { step: number; loss: number }[];
  eval: { step: number; loss: number }[];
  samples: { step: number; prompt: string; output: string }[];
  lastStep: Extract<TrainEventPayload, { type: 'step' }> | null;
  error: unknown;
}

const empty: JobView = { job: null, train: [], eval: [], samples: [], lastStep: null, error: null };

export function useJob(jobId: string | null): JobView & { reload: () => void } {
  const [view, setView] = useState<JobView>(empty);
  const [tick, setTick] = useState(0);

  useEffect(() => {
    if (!jobId) {
      setView(empty);
      return;
    }
    let live = true;
    api.call('jobs.get', { jobId }).then(
      (detail) =>
        live &&
        setView((v) => ({
          ...v,
          job: detail.job,
          // Keep any points events added meanwhile that the detail does not have yet.
          train: mergeByStep(detail.series.train.map((p) => ({ step: p.step, loss: p.loss })), v.train),
          eval: mergeByStep(detail.series.eval, v.eval),
          samples: detail.samples,
          error: null,
        })),
      (error: unknown) => live && setView((v) => ({ ...v, error })),
    );
    return () => {
      live = false;
    };
  }, [jobId, tick]);

  useEvents('job', (message) => {
    if (message.jobId !== jobId) return;
    if (message.type === 'status') {
      setView((v) => ({ ...v, job: message.job }));
      return;
    }
    const event = message.event;
    setView((v) => {
      switch (event.type) {
        case 'step':
          return { ...v, lastStep: event, train: mergeByStep(v.train, [{ step: event.step, loss: event.loss }]), job: v.job && { ...v.job, step: event.step, totalSteps: event.total_steps } };
        case 'eval':
          return { ...v, eval: mergeByStep(v.eval, [{ step: event.step, loss: event.eval_loss }]) };
        case 'sample':
          return { ...v, samples: [...v.samples, { step: event.step, prompt: event.prompt, output: event.output }].slice(-20) };
        default:
          return v;
      }
    });
  });

  return { ...view, reload: () => setTick((t) => t + 1) };
}

function mergeByStep<P extends { step: number }>(a: P[], b: P[]): P[] {
  const byStep = new Map<number, P>();
  for (const p of a) byStep.set(p.step, p);
  for (const p of b) byStep.set(p.step, p);
  return [...byStep.values()].sort((x, y) => x.step - y.step);
}
