// One adapter: its run's settings and curves, saved comparisons, and the
// things to do with it (rename, tag, notes, compare, export, delete/restore).
import { useEffect, useState } from 'react';
import { api, type Adapter } from '../api/client.ts';
import { Badge, Button, Card, ErrorNotice, Field, PageHeader, Select, Spinner, Stat, TextInput } from '../components/ui.tsx';
import { LossChart, mergeLossSeries } from '../components/LossChart.tsx';
import { formatBytes, formatDate, formatLoss } from '../format.ts';
import { useAction, useLoad } from '../hooks.ts';
import { navigate } from '../route.ts';
import { parseTags } from '../wizard/SaveStep.tsx';

export function AdapterPage({ adapterId }: { adapterId: string }) {
  const detail = useLoad(() => api.call('shelf.get', { id: adapterId }), [adapterId]);
  const d = detail.data;
  if (detail.error && !d) {
    return (
      <div className="flex flex-col gap-4">
        <PageHeader title="Adapter" actions={<Button onClick={() => navigate('shelf')}>← Shelf</Button>} />
        <ErrorNotice error={detail.error} onRetry={detail.reload} />
      </div>
    );
  }
  if (!d) return <Spinner />;
  const a = d.adapter;
  return (
    <div className="flex flex-col gap-4">
      <PageHeader
        title={a.name}
        subtitle={`${a.method === 'qlora' ? 'QLoRA' : 'LoRA'} rank ${a.rank} on ${a.baseModelName ?? 'an unknown base model'} · ${a.source === 'trained' ? 'trained' : 'imported'} ${formatDate(a.createdAt)}`}
        actions={
          <>
            <Button onClick={() => navigate('shelf')}>← Shelf</Button>
            <Button kind="primary" onClick={() => navigate('compare', a.id)} disabled={a.state !== 'ready'}>Compare</Button>
          </>
        }
      />
      {a.state === 'trashed' && <Badge tone="warn">In the trash</Badge>}
      <div className="grid grid-cols-2 gap-4 md:grid-cols-4">
        <Card><Stat label="eval loss" value={formatLoss(a.evalLoss)} /></Card>
        <Card><Stat label="size" value={formatBytes(a.sizeBytes)} /></Card>
        <Card><Stat label="alpha" value={a.alpha} hint={a.rslora ? 'rank-stabilised' : undefined} /></Card>
        <Card><Stat label="layers" value={a.targets.length} hint={a.targets.join(', ')} /></Card>
      </div>
      <Details adapter={a} onChanged={detail.reload} />
      {d.series && (
        <Card title="Training curves">
          <LossChart points={mergeLossSeries(d.series.train, d.series.eval)} />
        </Card>
      )}
      {d.run && (
        <Card title="How it was trained">
          <dl className="grid grid-cols-2 gap-x-6 gap-y-1 font-mono text-xs md:grid-cols-3" data-testid="run-config">
            {Object.entries(d.run.config).map(([key, value]) => (
              <div key={key} className="flex justify-between gap-2 border-b border-stone-100 py-0.5 dark:border-stone-800">
                <dt className="text-stone-500">{key}</dt>
                <dd className="truncate" title={JSON.stringify(value)}>{JSON.stringify(value)}</dd>
              </div>
            ))}
          </dl>
        </Card>
      )}
      {d.comparisons.length > 0 && (
        <Card title="Saved comparisons">
          <ul className="flex flex-col gap-3 text-sm">
            {d.comparisons.flatMap((c) =>
              c.entries.map((e, i) => (
                <li key={`${c.id}-${i}`} className="grid gap-2 md:grid-cols-[1fr_1fr_1fr]">
                  <div className="font-medium">{e.prompt}</div>
                  <div className="whitespace-pre-wrap text-stone-500">{e.base}</div>
                  <div className="whitespace-pre-wrap">{e.adapted} {e.rating && <Badge tone={e.rating === 'adapted' ? 'good' : 'neutral'}>preferred: {e.rating}</Badge>}</div>
                </li>
              )),
            )}
          </ul>
        </Card>
      )}
      <ExportCard adapter={a} />
    </div>
  );
}

function Details({ adapter, onChanged }: { adapter: Adapter; onChanged: () => void }) {
  const [name, setName] = useState(adapter.name);
  const [tags, setTags] = useState(adapter.tags.join(', '));
  const [notes, setNotes] = useState(adapter.notes);
  const action = useAction();
  useEffect(() => {
    setName(adapter.name);
    setTags(adapter.tags.join(', '));
    setNotes(adapter.notes);
  }, [adapter]);
  const changed = name !== adapter.name || tags !== adapter.tags.join(', ') || notes !== adapter.notes;

  async function save() {
    await action.run(async () => {
      if (name !== adapter.name) await api.call('shelf.rename', { id: adapter.id, name: name.trim() });
      if (tags !== adapter.tags.join(', ')) await api.call('shelf.setTags', { id: adapter.id, tags: parseTags(tags) });
      if (notes !== adapter.notes) await api.call('shelf.setNotes', { id: adapter.id, notes });
    });
    onChanged();
  }

  return (
    <Card
      title="Name, tags and notes"
      actions={
        adapter.state === 'ready' ? (
          <Button kind="danger" onClick={() => confirm(`Move “${adapter.name}” to the trash?`) && void action.run(() => api.call('shelf.delete', { id: adapter.id })).then(onChanged)}>Delete</Button>
        ) : (
          <Button onClick={() => void action.run(() => api.call('shelf.restore', { id: adapter.id })).then(onChanged)}>Restore</Button>
        )
      }
    >
      <div className="grid gap-4 md:grid-cols-2">
        <Field label="Name">{(id) => <TextInput id={id} value={name} onChange={(e) => setName(e.target.value)} />}</Field>
        <Field label="Tags" hint="Separated by commas">{(id) => <TextInput id={id} value={tags} onChange={(e) => setTags(e.target.value)} />}</Field>
      </div>
      <div className="mt-4">
        <Field label="Notes">
          {(id) => <textarea id={id} rows={3} value={notes} onChange={(e) => setNotes(e.target.value)} className="w-full rounded-md border border-stone-300 bg-white px-2.5 py-1.5 text-sm dark:border-stone-700 dark:bg-stone-950" />}
        </Field>
      </div>
      {action.error ? <div className="mt-3"><ErrorNotice error={action.error} /></div> : null}
      <div className="mt-3 flex justify-end">
        <Button kind="primary" disabled={!changed || !name.trim() || action.running} onClick={() => void save()}>Save changes</Button>
      </div>
    </Card>
  );
}

function ExportCard({ adapter }: { adapter: Adapter }) {
  const [format, setFormat] = useState<'peft' | 'merged'>('peft');
  const [to, setTo] = useState('');
  const [baseModel, setBaseModel] = useState('');
  const action = useAction();
  const [result, setResult] = useState<{ path: string; bytes: number } | null>(null);
  return (
    <Card title="Export">
      <form
        className="grid items-end gap-3 md:grid-cols-[auto_1fr_1fr_auto]"
        onSubmit={(e) => {
          e.preventDefault();
          setResult(null);
          void action
            .run(() => api.call('shelf.export', { id: adapter.id, format, to: to.trim(), ...(format === 'merged' ? { baseModel: baseModel.trim() } : {}) }))
            .then((r) => r && setResult(r));
        }}
      >
        <Field label="As">
          {(id) => (
            <Select id={id} value={format} onChange={(e) => setFormat(e.target.value as 'peft' | 'merged')}>
              <option value="peft">PEFT adapter (for transformers, vLLM…)</option>
              <option value="merged">Merged model (base + adapter)</option>
            </Select>
          )}
        </Field>
        <Field label="New folder" hint="Must not exist yet.">{(id) => <TextInput id={id} value={to} onChange={(e) => setTo(e.target.value)} placeholder="/home/me/exports/my-adapter" />}</Field>
        {format === 'merged' ? (
          <Field label="Base model folder">{(id) => <TextInput id={id} value={baseModel} onChange={(e) => setBaseModel(e.target.value)} />}</Field>
        ) : (
          <div />
        )}
        <Button kind="primary" type="submit" disabled={!to.trim() || (format === 'merged' && !baseModel.trim()) || action.running}>
          {action.running ? 'Exporting…' : 'Export'}
        </Button>
      </form>
      {action.running && <div className="mt-3"><Spinner label={format === 'merged' ? 'Writing the merged model; this takes a while for large models…' : 'Copying the adapter…'} /></div>}
      {action.error ? <div className="mt-3"><ErrorNotice error={action.error} /></div> : null}
      {result && <p className="mt-3 text-sm" role="status">Exported {formatBytes(result.bytes)} to <code className="font-mono">{result.path}</code>.</p>}
    </Card>
  );
}
