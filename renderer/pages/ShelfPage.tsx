// The shelf: every adapter, as a list or a grid, filtered by base model, tags
// and method, sorted by name, date, eval loss or size. The list moves an
// adapter to the trash; the trash's list restores it.
import { useState } from 'react';
import { api, type Adapter } from '../api/client.ts';
import { Badge, Button, Card, EmptyState, ErrorNotice, PageHeader, Select, Spinner, TextInput } from '../components/ui.tsx';
import { formatBytes, formatDate, formatLoss } from '../format.ts';
import { useAction, useLoad } from '../hooks.ts';
import { navigate } from '../route.ts';

type Sort = 'created' | 'name' | 'evalLoss' | 'size';

export function ShelfPage() {
  const [view, setView] = useState<'list' | 'grid'>('list');
  const [base, setBase] = useState('');
  const [tag, setTag] = useState('');
  const [method, setMethod] = useState<'' | 'lora' | 'qlora'>('');
  const [search, setSearch] = useState('');
  const [sort, setSort] = useState<Sort>('created');
  const [trash, setTrash] = useState(false);

  const all = useLoad(() => api.call('shelf.list', { state: trash ? 'trashed' : 'ready' }), [trash]);
  const tags = useLoad(() => api.call('shelf.tags', {}), []);
  const adapters = useLoad(
    () =>
      api.call('shelf.list', {
        state: trash ? 'trashed' : 'ready',
        ...(base ? { baseFingerprint: base } : {}),
        ...(tag ? { tags: [tag] } : {}),
        ...(method ? { method } : {}),
        ...(search.trim() ? { search: search.trim() } : {}),
        sort,
        direction: sort === 'name' || sort === 'evalLoss' ? 'asc' : 'desc',
      }),
    [base, tag, method, search, sort, trash],
  );

  // Base models present on the shelf: fingerprint → a readable name.
  const bases = new Map<string, string>();
  for (const a of all.data ?? []) if (a.baseFingerprint) bases.set(a.baseFingerprint, a.baseModelName ?? a.baseFingerprint.slice(0, 12));

  const action = useAction();
  const changed = () => {
    all.reload();
    tags.reload();
    adapters.reload();
  };
  const remove = (a: Adapter) => confirm(`Move “${a.name}” to the trash?`) && void action.run(() => api.call('shelf.delete', { id: a.id })).then(changed);
  const restore = (a: Adapter) => void action.run(() => api.call('shelf.restore', { id: a.id })).then(changed);

  const list = adapters.data ?? [];
  const filtered = base || tag || method || search.trim();
  return (
    <div className="flex flex-col gap-4">
      <PageHeader
        title={trash ? 'Trash' : 'Shelf'}
        subtitle={trash ? 'Deleted adapters stay here until you empty the trash.' : 'Your adapters, ready to compare, export or train further.'}
        actions={
          <>
            <Button kind="ghost" onClick={() => setTrash(!trash)}>{trash ? '← Back to the shelf' : 'Trash'}</Button>
            {trash && list.length > 0 && (
              <Button kind="danger" onClick={() => confirm('Delete these adapters for good?') && void api.call('shelf.emptyTrash', {}).then(adapters.reload, alert)}>
                Empty trash
              </Button>
            )}
          </>
        }
      />
      <div className="flex flex-wrap items-end gap-3" role="search">
        <TextInput aria-label="Search" placeholder="Search names and notes" value={search} onChange={(e) => setSearch(e.target.value)} />
        <Select aria-label="Base model" value={base} onChange={(e) => setBase(e.target.value)}>
          <option value="">All base models</option>
          {[...bases].map(([fp, name]) => (
            <option key={fp} value={fp}>{name}</option>
          ))}
        </Select>
        <Select aria-label="Tag" value={tag} onChange={(e) => setTag(e.target.value)}>
          <option value="">All tags</option>
          {(tags.data ?? []).map((t) => (
            <option key={t.tag} value={t.tag}>{t.tag} ({t.count})</option>
          ))}
        </Select>
        <Select aria-label="Method" value={method} onChange={(e) => setMethod(e.target.value as typeof method)}>
          <option value="">LoRA and QLoRA</option>
          <option value="lora">LoRA</option>
          <option value="qlora">QLoRA</option>
        </Select>
        <Select aria-label="Sort by" value={sort} onChange={(e) => setSort(e.target.value as Sort)}>
          <option value="created">Newest first</option>
          <option value="name">Name</option>
          <option value="evalLoss">Lowest eval loss</option>
          <option value="size">Largest</option>
        </Select>
        <div className="ml-auto flex gap-1" role="group" aria-label="View">
          <Button kind={view === 'list' ? 'primary' : 'secondary'} aria-pressed={view === 'list'} onClick={() => setView('list')}>List</Button>
          <Button kind={view === 'grid' ? 'primary' : 'secondary'} aria-pressed={view === 'grid'} onClick={() => setView('grid')}>Grid</Button>
        </div>
      </div>
      {adapters.error ? <ErrorNotice error={adapters.error} onRetry={adapters.reload} /> : null}
      {action.error ? <ErrorNotice error={action.error} /> : null}
      {!adapters.data && adapters.loading && <Spinner />}
      {adapters.data && list.length === 0 && (
        <EmptyState
          title={filtered ? 'No adapter matches these filters' : trash ? 'The trash is empty' : 'Your shelf is empty'}
          action={!filtered && !trash ? <Button kind="primary" onClick={() => navigate('wizard')}>Train your first adapter</Button> : undefined}
        >
          {filtered ? 'Clear a filter to see more.' : trash ? null : 'Adapters you train or import appear here.'}
        </EmptyState>
      )}
      {list.length > 0 && (view === 'list' ? <AdapterTable adapters={list} busy={action.running} onDelete={remove} onRestore={restore} /> : <AdapterGrid adapters={list} />)}
    </div>
  );
}

interface TableActions {
  busy: boolean;
  onDelete: (a: Adapter) => void;
  onRestore: (a: Adapter) => void;
}

function AdapterTable({ adapters, busy, onDelete, onRestore }: { adapters: Adapter[] } & TableActions) {
  return (
    <Card>
      <table className="w-full text-left text-sm [&_td]:px-2 [&_th]:px-2" data-testid="shelf-table">
        <thead className="text-xs uppercase text-stone-500">
          <tr>
            <th className="py-1">Name</th>
            <th>Base model</th>
            <th>Method</th>
            <th>Tags</th>
            <th className="text-right">Eval loss</th>
            <th className="text-right">Size</th>
            <th>Dataset</th>
            <th>Created</th>
            <th><span className="sr-only">Actions</span></th>
          </tr>
        </thead>
        <tbody>
          {adapters.map((a) => (
            <tr key={a.id} className="border-t border-stone-200 dark:border-stone-800">
              <td className="py-2">
                <a href={`#/shelf/${encodeURIComponent(a.id)}`} className="font-medium text-accent-700 hover:underline dark:text-accent-500">{a.name}</a>
              </td>
              <td>{a.baseModelName ?? '—'}</td>
              <td>{a.method === 'qlora' ? 'QLoRA' : 'LoRA'} r{a.rank}</td>
              <td className="space-x-1">{a.tags.map((t) => <Badge key={t}>{t}</Badge>)}</td>
              <td className="text-right tabular-nums">{formatLoss(a.evalLoss)}</td>
              <td className="text-right tabular-nums">{formatBytes(a.sizeBytes)}</td>
              <td>{a.datasetName ?? (a.datasetId !== null ? `#${a.datasetId}` : a.source === 'imported' ? 'imported' : '—')}</td>
              <td className="whitespace-nowrap text-stone-500">{formatDate(a.createdAt)}</td>
              <td className="text-right">
                {a.state === 'trashed' ? (
                  <Button disabled={busy} aria-label={`Restore ${a.name}`} onClick={() => onRestore(a)}>Restore</Button>
                ) : (
                  <Button kind="ghost" disabled={busy} aria-label={`Delete ${a.name}`} onClick={() => onDelete(a)}>Delete</Button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Card>
  );
}

function AdapterGrid({ adapters }: { adapters: Adapter[] }) {
  return (
    <ul className="grid gap-3 sm:grid-cols-2 lg:grid-cols-3" data-testid="shelf-grid">
      {adapters.map((a) => (
        <li key={a.id}>
          <a href={`#/shelf/${encodeURIComponent(a.id)}`} className="block rounded-xl border border-stone-200 bg-white p-4 hover:border-accent-500 dark:border-stone-800 dark:bg-stone-900">
            <div className="font-medium">{a.name}</div>
            <div className="text-xs text-stone-500">{a.baseModelName ?? 'unknown base'} · {a.method === 'qlora' ? 'QLoRA' : 'LoRA'} r{a.rank}</div>
            <div className="mt-2 flex flex-wrap gap-1">{a.tags.map((t) => <Badge key={t}>{t}</Badge>)}</div>
            <div className="mt-3 flex justify-between text-xs text-stone-500">
              <span>eval loss {formatLoss(a.evalLoss)}</span>
              <span>{formatBytes(a.sizeBytes)}</span>
              <span>{formatDate(a.createdAt)}</span>
            </div>
          </a>
        </li>
      ))}
    </ul>
  );
}
