// Compare: a base model and up to three adapters answer one prompt with the
// same seed, streamed side by side.
import { useEffect, useState } from 'react';
import { api } from '../api/client.ts';
import { Button, Card, EmptyState, ErrorNotice, Field, PageHeader, Select, Spinner, TextInput } from '../components/ui.tsx';
import { StreamColumns } from '../components/StreamColumns.tsx';
import { useComparison } from '../components/useComparison.ts';
import { useLoad } from '../hooks.ts';
import { navigate } from '../route.ts';

const MAX_ADAPTERS = 3;

export function ComparePage({ preselect }: { preselect?: string }) {
  const models = useLoad(() => api.call('models.list', {}), []);
  const adapters = useLoad(() => api.call('shelf.list', { state: 'ready' }), []);
  const [model, setModel] = useState('');
  const [chosen, setChosen] = useState<string[]>(preselect ? [preselect] : []);
  const [prompt, setPrompt] = useState('');
  const [seed, setSeed] = useState(1);
  const [maxTokens, setMaxTokens] = useState(64);
  const comparison = useComparison();
  const [shown, setShown] = useState<string[]>([]);

  // Default base: the one the first chosen adapter was trained on, else the first usable model.
  useEffect(() => {
    if (model || !models.data) return;
    const first = adapters.data?.find((a) => a.id === chosen[0]);
    const usable = models.data.filter((m) => m.usable);
    const match = usable.find((m) => first?.baseModelName && m.name === first.baseModelName) ?? usable[0];
    if (match) setModel(match.path);
  }, [models.data, adapters.data, chosen, model]);

  const toggle = (id: string) => setChosen((c) => (c.includes(id) ? c.filter((x) => x !== id) : c.length < MAX_ADAPTERS ? [...c, id] : c));
  const nameOf = (id: string) => adapters.data?.find((a) => a.id === id)?.name ?? id;

  return (
    <div className="flex flex-col gap-4">
      <PageHeader title="Compare" subtitle="The base model and up to three adapters answer the same prompt with the same seed." />
      {models.error ? <ErrorNotice error={models.error} onRetry={models.reload} /> : null}
      {adapters.error ? <ErrorNotice error={adapters.error} onRetry={adapters.reload} /> : null}
      {(models.loading || adapters.loading) && !(models.data && adapters.data) && <Spinner />}
      {adapters.data && adapters.data.length === 0 && (
        <EmptyState title="Nothing to compare yet" action={<Button kind="primary" onClick={() => navigate('wizard')}>Train an adapter</Button>}>
          Comparisons need at least one adapter on the shelf.
        </EmptyState>
      )}
      {adapters.data && adapters.data.length > 0 && models.data && (
        <Card>
          <form
            className="flex flex-col gap-4"
            onSubmit={(e) => {
              e.preventDefault();
              setShown(chosen);
              void comparison.start(model, chosen, prompt.trim(), seed, maxTokens);
            }}
          >
            <div className="grid gap-4 md:grid-cols-[2fr_1fr_1fr]">
              <Field label="Base model">
                {(id) => (
                  <Select id={id} value={model} onChange={(e) => setModel(e.target.value)}>
                    {models.data!.filter((m) => m.usable).map((m) => (
                      <option key={m.id} value={m.path}>{m.name}</option>
                    ))}
                  </Select>
                )}
              </Field>
              <Field label="Seed" hint="Same seed, same sampling for every side.">
                {(id) => <TextInput id={id} type="number" min={0} value={seed} onChange={(e) => setSeed(Math.max(0, Math.floor(Number(e.target.value) || 0)))} />}
              </Field>
              <Field label="Max new tokens">
                {(id) => <TextInput id={id} type="number" min={1} max={8192} value={maxTokens} onChange={(e) => setMaxTokens(Math.min(8192, Math.max(1, Math.floor(Number(e.target.value) || 1))))} />}
              </Field>
            </div>
            <fieldset>
              <legend className="text-sm font-medium">Adapters (up to {MAX_ADAPTERS})</legend>
              <div className="mt-1 flex flex-wrap gap-3">
                {adapters.data!.map((a) => (
                  <label key={a.id} className="flex items-center gap-1.5 text-sm">
                    <input type="checkbox" checked={chosen.includes(a.id)} disabled={!chosen.includes(a.id) && chosen.length >= MAX_ADAPTERS} onChange={() => toggle(a.id)} />
                    {a.name}
                  </label>
                ))}
              </div>
            </fieldset>
            <Field label="Prompt">{(id) => <TextInput id={id} value={prompt} onChange={(e) => setPrompt(e.target.value)} placeholder="What is the capital of Peru?" />}</Field>
            <div>
              <Button kind="primary" type="submit" disabled={!model || chosen.length === 0 || !prompt.trim() || comparison.running}>
                {comparison.running ? 'Writing…' : 'Compare'}
              </Button>
            </div>
          </form>
        </Card>
      )}
      {comparison.error ? <ErrorNotice error={comparison.error} /> : null}
      {comparison.jobId && (
        <StreamColumns
          columns={[
            { key: 'base', title: 'Base model', output: comparison.sides['base'] },
            ...shown.map((id) => ({ key: id, title: nameOf(id), output: comparison.sides[id] })),
          ]}
        />
      )}
    </div>
  );
}
