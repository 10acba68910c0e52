// Step 5: evaluate. The base model and the new adapter answer the same prompt
// with the same seed, streamed side by side. Optionally blind: the answers are
// shown as A and B in a random order until the user has said which is better.
import { useMemo, useState } from 'react';
import { api } from '../api/client.ts';
import { Button, Card, ErrorNotice, Field, TextInput } from '../components/ui.tsx';
import { StreamColumns } from '../components/StreamColumns.tsx';
import { useComparison } from '../components/useComparison.ts';
import { useAction } from '../hooks.ts';
import { useWizard } from './state.ts';
import { StepNav } from './WizardPage.tsx';

type Rating = 'base' | 'adapted' | 'tie' | 'neither';

export function EvaluateStep() {
  const wizard = useWizard();
  const comparison = useComparison();
  const [prompt, setPrompt] = useState('');
  const [blind, setBlind] = useState(false);
  const [rating, setRating] = useState<Rating | null>(null);
  const save = useAction();
  // Which side is "A" in blind mode: fixed per comparison so it does not flip on re-render.
  const baseIsA = useMemo(() => Math.random() < 0.5, [comparison.jobId]);
  const adapterId = wizard.adapterId;

  if (!adapterId || !wizard.modelPath) {
    return (
      <Card title="Evaluate">
        <p className="text-sm">Finish a training run first.</p>
        <StepNav canNext={false} blocker="No adapter yet." />
      </Card>
    );
  }

  const base = { key: 'base', output: comparison.sides['base'] };
  const adapted = { key: adapterId, output: comparison.sides[adapterId] };
  const hidden = blind && rating === null;
  const columns = hidden
    ? (baseIsA ? [base, adapted] : [adapted, base]).map((c, i) => ({ ...c, title: i === 0 ? 'Answer A' : 'Answer B' }))
    : [
        { ...base, title: 'Base model' },
        { ...adapted, title: 'With your adapter' },
      ];

  async function rate(choice: 'A' | 'B' | 'tie' | 'neither') {
    const r: Rating = choice === 'tie' || choice === 'neither' ? choice : (choice === 'A') === baseIsA ? 'base' : 'adapted';
    setRating(r);
    await save.run(() =>
      api.call('comparisons.save', {
        title: prompt.slice(0, 80),
        adapterId,
        settings: { seed: 1, blind: true },
        entries: [{ prompt, base: base.output?.text ?? '', adapted: adapted.output?.text ?? '', rating: r }],
      }),
    );
  }

  return (
    <div className="flex flex-col gap-4">
      <Card title="Ask both models the same thing">
        <form
          className="flex items-end gap-2"
          onSubmit={(e) => {
            e.preventDefault();
            setRating(null);
            void comparison.start(wizard.modelPath!, [adapterId], prompt.trim(), 1, 64);
          }}
        >
          <div className="flex-1">
            <Field label="Prompt" hint="Try something like your training data, and something it has not seen.">
              {(id) => <TextInput id={id} value={prompt} onChange={(e) => setPrompt(e.target.value)} placeholder="What is the capital of Peru?" />}
            </Field>
          </div>
          <label className="flex items-center gap-1.5 pb-2 text-sm">
            <input type="checkbox" checked={blind} onChange={(e) => setBlind(e.target.checked)} /> Blind A/B
          </label>
          <Button kind="primary" type="submit" disabled={!prompt.trim() || comparison.running}>
            {comparison.running ? 'Writing…' : 'Compare'}
          </Button>
        </form>
      </Card>
      {comparison.error ? <ErrorNotice error={comparison.error} /> : null}
      {comparison.jobId && <StreamColumns columns={columns} />}
      {comparison.finished && blind && rating === null && (
        <Card title="Which answer is better?">
          <div className="flex flex-wrap gap-2">
            <Button onClick={() => void rate('A')}>A is better</Button>
            <Button onClick={() => void rate('B')}>B is better</Button>
            <Button onClick={() => void rate('tie')}>About the same</Button>
            <Button onClick={() => void rate('neither')}>Neither is good</Button>
          </div>
        </Card>
      )}
      {rating && <p className="text-sm" role="status">You chose: {rating === 'base' ? 'the base model' : rating === 'adapted' ? 'your adapter' : rating === 'tie' ? 'about the same' : 'neither'}. Saved with the adapter.</p>}
      {save.error ? <ErrorNotice error={save.error} /> : null}
      <StepNav canNext blocker={null} />
    </div>
  );
}
