// The wizard: one step per screen, back / next, choices kept (state.ts).
import type { ReactNode } from 'react';
import { Button, PageHeader } from '../components/ui.tsx';
import { resetWizard, updateWizard, useWizard } from './state.ts';
import { ModelStep } from './ModelStep.tsx';
import { DataStep } from './DataStep.tsx';
import { MethodStep } from './MethodStep.tsx';
import { TrainStep } from './TrainStep.tsx';
import { EvaluateStep } from './EvaluateStep.tsx';
import { SaveStep } from './SaveStep.tsx';

const STEPS = ['Base model', 'Data', 'Method', 'Train', 'Evaluate', 'Save'];

export function WizardPage() {
  const wizard = useWizard();
  const step = Math.min(Math.max(wizard.step, 1), STEPS.length);
  return (
    <div className="flex flex-col gap-6">
      <PageHeader
        title="New adapter"
        subtitle="Teach a base model new behaviour from your own examples, in six steps."
        actions={
          wizard.step > 1 && (
            <Button kind="ghost" onClick={() => confirm('Start over? Your current choices are cleared (a running training keeps running).') && resetWizard()}>
              Start over
            </Button>
          )
        }
      />
      <ol className="flex flex-wrap gap-2" aria-label="Wizard progress">
        {STEPS.map((label, i) => {
          const n = i + 1;
          const state = n === step ? 'current' : n < step ? 'done' : 'todo';
          return (
            <li key={label} aria-current={state === 'current' ? 'step' : undefined} className={`flex items-center gap-2 rounded-full px-3 py-1 text-sm ${state === 'current' ? 'bg-accent-600 text-white' : state === 'done' ? 'bg-accent-50 text-accent-700 dark:bg-stone-800 dark:text-stone-200' : 'text-stone-500'}`}>
              <span className="tabular-nums">{n}</span> {label}
            </li>
          );
        })}
      </ol>
      <div data-testid={`wizard-step-${step}`}>{renderStep(step)}</div>
    </div>
  );
}

function renderStep(step: number) {
  switch (step) {
    case 1:
      return <ModelStep />;
    case 2:
      return <DataStep />;
    case 3:
      return <MethodStep />;
    case 4:
      return <TrainStep />;
    case 5:
      return <EvaluateStep />;
    default:
      return <SaveStep />;
  }
}

/** The back / next row at the bottom of every step; next is disabled (with the reason shown) until the step is complete. */
export function StepNav({ canNext, blocker, nextLabel = 'Next', onNext, extra }: { canNext: boolean; blocker?: string | null; nextLabel?: string; onNext?: () => void; extra?: ReactNode }) {
  const wizard = useWizard();
  return (
    <div className="mt-6 flex items-center justify-between gap-3 border-t border-stone-200 pt-4 dark:border-stone-800">
      <Button onClick={() => updateWizard({ step: wizard.step - 1 })} disabled={wizard.step <= 1}>
        ← Back
      </Button>
      <div className="flex items-center gap-3">
        {!canNext && blocker && <span className="text-sm text-stone-500">{blocker}</span>}
        {extra}
        <Button kind="primary" disabled={!canNext} onClick={() => (onNext ? onNext() : updateWizard({ step: wizard.step + 1 }))}>
          {nextLabel} →
        </Button>
      </div>
    </div>
  );
}
