// Step 3: how to train. LoRA or QLoRA, a preset, advanced fields, and the
// memory estimate against this machine, recomputed as the fields change.
import { useEffect, useState } from 'react';
import { api, type MemoryEstimate } from '../api/client.ts';
import { Button, Card, ErrorNotice, Field, Spinner, TextInput } from '../components/ui.tsx';
import { MemoryBar } from '../components/MemoryBar.tsx';
import { ALL_TARGETS, applyPreset, PRESETS, updateWizard, useWizard, type MethodChoices, type Preset } from './state.ts';
import { StepNav } from './WizardPage.tsx';

const CATEGORY_ORDER = ['base', 'adapters', 'gradients', 'optimizer', 'activations', 'workspace'];

export function MethodStep() {
  const wizard = useWizard();
  const choices = wizard.method;
  const set = (change: Partial<MethodChoices>) => updateWizard({ method: { ...choices, ...change, preset: 'preset' in change ? change.preset! : 'custom' } });
  const estimate = useEstimate(wizard.modelPath, choices);

  return (
    <div className="flex flex-col gap-4">
      <Card title="Method">
        <div className="grid gap-3 md:grid-cols-2" role="radiogroup" aria-label="Method">
          <Choice selected={choices.method === 'lora'} onSelect={() => set({ method: 'lora', preset: choices.preset })} title="LoRA" about="Trains small matrices beside the full-precision model. Best quality; needs more memory." />
          <Choice selected={choices.method === 'qlora'} onSelect={() => set({ method: 'qlora', preset: choices.preset })} title="QLoRA" about="Holds the base model in 4 bits. About a quarter of the memory for the model; a little slower." />
        </div>
      </Card>

      <Card title="How much to train">
        <div className="grid gap-3 md:grid-cols-3" role="radiogroup" aria-label="Preset">
          {(Object.keys(PRESETS) as Preset[]).map((p) => (
            <Choice key={p} selected={choices.preset === p} onSelect={() => updateWizard({ method: applyPreset(choices, p) })} title={PRESETS[p].label} about={PRESETS[p].about} />
          ))}
        </div>
        <details className="mt-4" open={choices.preset === 'custom'}>
          <summary className="cursor-pointer text-sm font-medium">Advanced settings</summary>
          <div className="mt-3 grid gap-4 md:grid-cols-4">
            <NumberField label="Rank" hint="Size of the adapter." value={choices.rank} min={1} max={4096} onChange={(rank) => set({ rank })} />
            <NumberField label="Alpha" hint="Scale; usually 2 × rank." value={choices.alpha} min={0.001} onChange={(alpha) => set({ alpha })} />
            <NumberField label="Learning rate" value={choices.lr} min={1e-7} step="any" onChange={(lr) => set({ lr })} />
            <NumberField label="Steps" hint="Optimizer steps." value={choices.steps} min={1} onChange={(steps) => set({ steps })} />
            <NumberField label="Sequence length" hint="Tokens per example." value={choices.seqLen} min={16} onChange={(seqLen) => set({ seqLen })} />
            <NumberField label="Batch size" value={choices.batchSize} min={1} onChange={(batchSize) => set({ batchSize })} />
            <NumberField label="Gradient accumulation" value={choices.gradAccum} min={1} onChange={(gradAccum) => set({ gradAccum })} />
            <label className="flex items-center gap-2 self-center text-sm">
              <input type="checkbox" checked={choices.checkpointing} onChange={(e) => set({ checkpointing: e.target.checked })} />
              Save memory (recompute activations)
            </label>
          </div>
          <fieldset className="mt-4">
            <legend className="text-sm font-medium">Layers to adapt</legend>
            <div className="mt-1 flex flex-wrap gap-3 text-sm">
              {ALL_TARGETS.map((t) => (
                <label key={t} className="flex items-center gap-1.5 font-mono text-xs">
                  <input
                    type="checkbox"
                    checked={choices.targets.includes(t)}
                    onChange={(e) => set({ targets: e.target.checked ? [...choices.targets, t] : choices.targets.filter((x) => x !== t) })}
                  />
                  {t}
                </label>
              ))}
            </div>
          </fieldset>
        </details>
      </Card>

      <Card title="Memory" actions={estimate.loading ? <Spinner label="Estimating…" /> : null}>
        {estimate.error ? <ErrorNotice error={estimate.error} /> : null}
        {estimate.data && (
          <>
            <MemoryBar
              label={`${estimate.data.device.kind === 'gpu' ? 'VRAM' : 'RAM'} (${estimate.data.device.name})`}
              usableBytes={estimate.data.usableBytes}
              correction={estimate.data.correction}
              segments={[
                ...CATEGORY_ORDER.map((name) => ({ name, bytes: estimate.data!.categories[name] ?? 0 })),
                { name: 'runtime', bytes: estimate.data.overheadBytes },
              ]}
            />
            {!(estimate.data.correction?.fits ?? estimate.data.fits) && (
              <p className="mt-3 text-sm">
                To make it fit: choose QLoRA, a shorter sequence length, a smaller batch, or turn on “Save memory”.{' '}
                <Button kind="ghost" onClick={() => void fit(wizard.modelPath, choices)}>Find settings that fit</Button>
              </p>
            )}
          </>
        )}
      </Card>

      <StepNav canNext={choices.targets.length > 0 && (estimate.data?.correction?.fits ?? estimate.data?.fits ?? true)} blocker={choices.targets.length === 0 ? 'Choose at least one layer to adapt.' : 'These settings do not fit this machine’s memory.'} />
    </div>
  );
}

/** Re-estimates 300 ms after the last change; a newer answer always wins over an older one. */
function useEstimate(model: string | null, choices: MethodChoices) {
  const [state, setState] = useState<{ data: MemoryEstimate | null; error: unknown; loading: boolean }>({ data: null, error: null, loading: false });
  const key = JSON.stringify([model, choices.method, choices.rank, choices.targets, choices.seqLen, choices.batchSize, choices.checkpointing]);
  useEffect(() => {
    if (!model || choices.targets.length === 0) return;
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    const timer = setTimeout(() => {
      api
        .call('estimate.estimate', {
          model,
          choices: { method: choices.method, rank: choices.rank, targets: choices.targets as MemoryEstimate['choices']['targets'], seqLen: choices.seqLen, batch: choices.batchSize, checkpointing: choices.checkpointing },
        })
        .then(
          (data) => live && setState({ data, error: null, loading: false }),
          (error: unknown) => live && setState((s) => ({ ...s, error, loading: false })),
        );
    }, 300);
    return () => {
      live = false;
      clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return state;
}

async function fit(model: string | null, choices: MethodChoices) {
  if (!model) return;
  try {
    const result = await api.call('estimate.fit', { model, fixed: { method: choices.method, targets: choices.targets as MemoryEstimate['choices']['targets'] } });
    if (result.found && result.choices) {
      const c = result.choices;
      updateWizard((s) => ({ method: { ...s.method, preset: 'custom', method: c.method, rank: c.rank, seqLen: c.seqLen, batchSize: c.batch, checkpointing: c.checkpointing } }));
    } else {
      alert(['No settings fit this machine.', ...result.suggestions].join('\n'));
    }
  } catch (error) {
    alert(error instanceof Error ? error.message : String(error));
  }
}

function Choice({ selected, onSelect, title, about }: { selected: boolean; onSelect: () => void; title: string; about: string }) {
  return (
    <button
      type="button"
      role="radio"
      aria-checked={selected}
      onClick={onSelect}
      className={`rounded-lg border p-3 text-left ${selected ? 'border-accent-500 bg-accent-50 dark:bg-stone-800' : 'border-stone-200 hover:border-stone-400 dark:border-stone-800'}`}
    >
      <div className="font-medium">{title}</div>
      <div className="text-sm text-stone-600 dark:text-stone-400">{about}</div>
    </button>
  );
}

function NumberField({ label, hint, value, onChange, min, max, step }: { label: string; hint?: string; value: number; onChange: (v: number) => void; min?: number; max?: number; step?: string }) {
  const [text, setText] = useState(String(value));
  useEffect(() => setText(String(value)), [value]);
  const parsed = Number(text);
  const error = text.trim() === '' || !Number.isFinite(parsed) ? 'Enter a number.' : min !== undefined && parsed < min ? `At least ${min}.` : max !== undefined && parsed > max ? `At most ${max}.` : null;
  return (
    <Field label={label} hint={hint} error={error}>
      {(id) => (
        <TextInput
          id={id}
          type="number"
          inputMode="decimal"
          step={step ?? '1'}
          value={text}
          aria-invalid={error !== null}
          onChange={(e) => {
            setText(e.target.value);
            const v = Number(e.target.value);
            if (e.target.value.trim() !== '' && Number.isFinite(v) && (min === undefined || v >= min) && (max === undefined || v <= max)) onChange(v);
          }}
        />
      )}
    </Field>
  );
}
