// Step 4: train. Starts the job, then shows it live: loss and eval-loss chart,
// step, tokens/s, ETA, memory, samples at checkpoints; pause, resume, cancel.
import { useState } from 'react';
import { api, type TrainConfigInput } from '../api/client.ts';
import { Badge, Button, Card, ErrorNotice, Field, ProgressBar, Stat, TextInput } from '../components/ui.tsx';
import { LossChart, mergeLossSeries } from '../components/LossChart.tsx';
import { formatBytes, formatDuration, formatLoss } from '../format.ts';
import { useAction } from '../hooks.ts';
import { jobFinished, updateWizard, useWizard, type WizardState } from './state.ts';
import { useJob } from './useJob.ts';
import { StepNav } from './WizardPage.tsx';

const statusWords: Record<string, string> = {
  queued: 'Waiting to start',
  running: 'Training',
  pausing: 'Pausing at the next checkpoint…',
  paused: 'Paused',
  stopping: 'Stopping…',
  completed: 'Finished',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

export function trainConfigOf(wizard: WizardState, samplePrompt: string): TrainConfigInput {
  const m = wizard.method;
  return {
    model: wizard.modelPath ?? '',
    data: wizard.dataPath,
    method: m.method,
    rank: m.rank,
    alpha: m.alpha,
    lr: m.lr,
    steps: m.steps,
    epochs: null,
    seqLen: m.seqLen,
    batchSize: m.batchSize,
    gradAccum: m.gradAccum,
    gradientCheckpointing: m.checkpointing,
    targets: m.targets as TrainConfigInput['targets'],
    ...(samplePrompt.trim() ? { samplePrompts: [samplePrompt.trim()] } : {}),
  };
}

export function TrainStep() {
  const wizard = useWizard();
  const view = useJob(wizard.jobId);
  const start = useAction();
  const control = useAction();
  const [samplePrompt, setSamplePrompt] = useState('');
  const job = view.job;

  async function startTraining() {
    const started = await start.run(() => api.call('jobs.startTraining', { config: trainConfigOf(wizard, samplePrompt), addToShelf: true }));
    if (started) updateWizard({ jobId: started.id, adapterId: null });
  }

  if (!wizard.jobId) {
    return (
      <div className="flex flex-col gap-4">
        <Card title="Ready to train">
          <dl className="grid grid-cols-2 gap-2 text-sm md:grid-cols-4">
            <Summary label="Base model" value={wizard.modelName ?? wizard.modelPath} />
            <Summary label="Data" value={wizard.dataPath.split(/[\\/]/).pop()} />
            <Summary label="Method" value={`${wizard.method.method === 'qlora' ? 'QLoRA' : 'LoRA'}, rank ${wizard.method.rank}`} />
            <Summary label="Steps" value={wizard.method.steps} />
          </dl>
          <div className="mt-4 max-w-xl">
            <Field label="Try a prompt at each checkpoint (optional)" hint="See how the answers change while it learns.">
              {(id) => <TextInput id={id} value={samplePrompt} onChange={(e) => setSamplePrompt(e.target.value)} placeholder="What is the capital of France?" />}
            </Field>
          </div>
          {start.error ? <div className="mt-3"><ErrorNotice error={start.error} /></div> : null}
        </Card>
        <StepNav canNext nextLabel={start.running ? 'Starting…' : 'Start training'} onNext={() => void startTraining()} />
      </div>
    );
  }

  const total = job?.totalSteps ?? view.lastStep?.total_steps ?? null;
  const step = job?.step ?? 0;
  const active = job !== null && !jobFinished(job);
  return (
    <div className="flex flex-col gap-4">
      <Card
        title={job?.name ?? 'Training'}
        actions={
          <div className="flex items-center gap-2">
            <Badge tone={job?.status === 'completed' ? 'good' : job?.status === 'failed' ? 'bad' : 'neutral'}>
              <span data-testid="job-status" data-status={job?.status ?? ''}>{statusWords[job?.status ?? 'queued']}</span>
            </Badge>
            {job?.status === 'running' && <Button disabled={control.running} onClick={() => void control.run(() => api.call('jobs.pause', { jobId: job.id }))}>Pause</Button>}
            {(job?.status === 'paused' || (job?.status === 'failed' && job.lastCheckpoint)) && (
              <Button kind="primary" disabled={control.running} onClick={() => void control.run(() => api.call('jobs.resume', { jobId: job.id }))}>
                Resume
              </Button>
            )}
            {active && (
              <Button kind="danger" disabled={control.running} onClick={() => confirm('Cancel this training? The last checkpoint is kept.') && void control.run(() => api.call('jobs.cancel', { jobId: job.id }))}>
                Cancel
              </Button>
            )}
          </div>
        }
      >
        {view.error ? <ErrorNotice error={view.error} onRetry={view.reload} /> : null}
        {control.error ? <ErrorNotice error={control.error} /> : null}
        {job?.error && <ErrorNotice error={new Error(job.error.message)} />}
        <ProgressBar fraction={total ? step / total : null} label={`Step ${step}${total ? ` of ${total}` : ''}`} />
        {job?.status === 'failed' && job.oomOffer && (
          <div className="mt-2 flex flex-wrap items-center justify-between gap-2 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm dark:border-amber-700 dark:bg-amber-950/40" data-testid="oom-offer">
            <p>{job.oomOffer.explanation}</p>
            <Button
              kind="primary"
              disabled={control.running}
              onClick={() =>
                void control.run(async () => {
                  const next = await api.call('jobs.acceptOomOffer', { jobId: job.id });
                  updateWizard({ jobId: next.id, adapterId: null });
                  return next;
                })
              }
            >
              Train with smaller settings
            </Button>
          </div>
        )}
        {job?.status === 'paused' && job.lastCheckpoint && (
          <p className="mt-2 text-sm" data-testid="job-checkpoint">
            Paused with a checkpoint of step {checkpointStep(job.lastCheckpoint) ?? step}: <code className="font-mono text-xs">{job.lastCheckpoint}</code>. Resume continues from it.
          </p>
        )}
        <div className="mt-4 grid grid-cols-2 gap-4 md:grid-cols-5">
          <Stat label="loss" value={formatLoss(view.train.at(-1)?.loss)} />
          <Stat label="eval loss" value={formatLoss(view.eval.at(-1)?.loss)} />
          <Stat label="tokens / s" value={view.lastStep ? Math.round(view.lastStep.tokens_per_second).toLocaleString() : '—'} />
          <Stat label="time left" value={active && job?.status !== 'paused' ? formatDuration(view.lastStep?.eta_seconds) : '—'} />
          <Stat label="memory" value={formatBytes(view.lastStep?.memory.peak_bytes)} hint="peak so far" />
        </div>
      </Card>
      <Card title="Loss">
        <LossChart points={mergeLossSeries(view.train, view.eval)} />
      </Card>
      {view.samples.length > 0 && (
        <Card title="Samples at checkpoints">
          <ul className="flex flex-col gap-3 text-sm">
            {view.samples.map((s, i) => (
              <li key={`${s.step}-${i}`}>
                <div className="text-xs text-stone-500">step {s.step} · {s.prompt}</div>
                <div className="whitespace-pre-wrap">{s.output}</div>
              </li>
            ))}
          </ul>
        </Card>
      )}
      <StepNav
        canNext={job?.status === 'completed' && job.adapterId !== null}
        blocker={job?.status === 'paused' ? 'The run is paused; resume it to finish.' : active ? 'Training is still running.' : job?.status === 'completed' ? 'The adapter is being put on the shelf…' : 'The run did not complete.'}
        onNext={() => updateWizard({ adapterId: job?.adapterId ?? null, step: 5 })}
        extra={
          !active && job?.status !== 'completed' ? (
            <Button onClick={() => updateWizard({ jobId: null })}>Set up a new run</Button>
          ) : null
        }
      />
    </div>
  );
}

/** The step of a checkpoint folder (…/checkpoints/step-000012 → 12), or null for another path. */
function checkpointStep(path: string): number | null {
  const match = /step-(\d+)[\\/]?$/.exec(path);
  return match ? Number(match[1]) : null;
}

function Summary({ label, value }: { label: string; value: unknown }) {
  return (
    <div>
      <dt className="text-xs uppercase text-stone-500">{label}</dt>
      <dd className="truncate font-medium">{String(value ?? '—')}</dd>
    </div>
  );
}
