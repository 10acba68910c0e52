// Step 1: the base model. A folder on disk, one found in the Hugging Face
// cache, or a suggested model downloaded here (with progress and speed). Gated
// models take a hub token, held in this page's memory only (never in the
// wizard's sessionStorage) and sent with the download call.
import { useState } from 'react';
import { api, type Download, type ModelEntry } from '../api/client.ts';
import { Badge, Button, Card, EmptyState, ErrorNotice, Field, ProgressBar, Spinner, TextInput } from '../components/ui.tsx';
import { formatBytes } from '../format.ts';
import { useAction, useEvents, useLoad } from '../hooks.ts';
import { updateWizard, useWizard } from './state.ts';
import { StepNav } from './WizardPage.tsx';

export function ModelStep() {
  const wizard = useWizard();
  const models = useLoad(() => api.call('models.list', {}), []);
  const suggested = useLoad(() => api.call('models.suggested', {}), []);
  const [folder, setFolder] = useState('');
  const add = useAction();
  const [downloads, setDownloads] = useState<Record<string, Download>>({});
  const [hubToken, setHubToken] = useState('');

  useEvents('download', (download) => {
    setDownloads((all) => ({ ...all, [download.repo]: download }));
    if (download.status === 'done') models.reload();
  });

  const choose = (model: ModelEntry) => updateWizard({ modelPath: model.path, modelName: model.name });

  async function addFolder() {
    const model = await add.run(() => api.call('models.addFolder', { path: folder.trim() }));
    if (model) {
      setFolder('');
      models.reload();
      if (model.usable) choose(model);
    }
  }

  return (
    <div className="flex flex-col gap-4">
      <Card title="Models on this computer">
        {models.error ? <ErrorNotice error={models.error} onRetry={models.reload} /> : null}
        {!models.data && models.loading && <Spinner label="Looking for models…" />}
        {models.data && models.data.length === 0 && (
          <EmptyState title="No models found yet">Add a model folder below, or download one of the suggested models.</EmptyState>
        )}
        {models.data && models.data.length > 0 && (
          <ul className="flex flex-col gap-2" role="radiogroup" aria-label="Base model">
            {models.data.map((model) => {
              const selected = wizard.modelPath === model.path;
              return (
                <li key={model.id}>
                  <button
                    type="button"
                    role="radio"
                    aria-checked={selected}
                    disabled={!model.usable}
                    onClick={() => choose(model)}
                    className={`flex w-full items-center justify-between gap-3 rounded-lg border p-3 text-left ${selected ? 'border-accent-500 bg-accent-50 dark:bg-stone-800' : 'border-stone-200 hover:border-stone-400 dark:border-stone-800'} disabled:opacity-60`}
                  >
                    <span className="min-w-0">
                      <span className="block font-medium">{model.name}</span>
                      <span className="block truncate font-mono text-xs text-stone-500">{model.path}</span>
                      {model.problem && <span className="block text-xs text-amber-700 dark:text-amber-400">{model.problem}</span>}
                    </span>
                    <span className="flex shrink-0 items-center gap-2">
                      {model.arch && <Badge>{model.arch}</Badge>}
                      {model.parameters !== null && <Badge>{formatParameters(model.parameters)}</Badge>}
                      <Badge>{model.source === 'hf-cache' ? 'Hugging Face cache' : model.source === 'download' ? 'downloaded' : 'folder'}</Badge>
                      <span className="text-xs tabular-nums text-stone-500">{formatBytes(model.sizeBytes)}</span>
                    </span>
                  </button>
                </li>
              );
            })}
          </ul>
        )}
      </Card>

      <Card title="Add a model folder">
        <form
          className="flex items-end gap-2"
          onSubmit={(e) => {
            e.preventDefault();
            void addFolder();
          }}
        >
          <div className="flex-1">
            <Field label="Folder path" hint="A folder with config.json, tokenizer.json and *.safetensors (Hugging Face layout).">
              {(id) => <TextInput id={id} value={folder} onChange={(e) => setFolder(e.target.value)} placeholder="/home/me/models/SmolLM2-135M" className="w-full rounded-md border border-stone-300 bg-white px-2.5 py-1.5 font-mono text-sm dark:border-stone-700 dark:bg-stone-950" />}
            </Field>
          </div>
          <Button kind="primary" type="submit" disabled={!folder.trim() || add.running}>
            {add.running ? 'Checking…' : 'Add'}
          </Button>
        </form>
        {add.error ? <div className="mt-3"><ErrorNotice error={add.error} /></div> : null}
      </Card>

      <Card title="Suggested models">
        <div className="mb-3 max-w-md">
          <Field label="Hugging Face token (for gated models)" hint="Used for the download only; never saved. Accept the model's licence on its hub page first.">
            {(id) => <TextInput id={id} type="password" autoComplete="off" spellCheck={false} value={hubToken} onChange={(e) => setHubToken(e.target.value)} placeholder="hf_…" />}
          </Field>
        </div>
        {suggested.error ? <ErrorNotice error={suggested.error} onRetry={suggested.reload} /> : null}
        {!suggested.data && suggested.loading && <Spinner />}
        {suggested.data && (
          <ul className="grid gap-3 md:grid-cols-2">
            {suggested.data.map((s) => {
              const download = downloads[s.repo];
              return (
                <li key={s.repo} className="flex flex-col gap-2 rounded-lg border border-stone-200 p-3 dark:border-stone-800">
                  <div className="flex items-start justify-between gap-2">
                    <div>
                      <div className="font-medium">{s.name}</div>
                      <div className="text-xs text-stone-500">{s.repo} · {formatParameters(s.parameters)} · {formatBytes(s.downloadBytes)}</div>
                      {s.gated && <Badge tone="warn">gated: needs a token</Badge>}
                    </div>
                    {s.fitsLora === false && s.fitsQlora === false ? <Badge tone="bad">too big here</Badge> : s.fitsLora === false ? <Badge tone="warn">QLoRA only</Badge> : s.fitsLora ? <Badge tone="good">fits</Badge> : null}
                  </div>
                  <p className="text-sm text-stone-600 dark:text-stone-400">{s.why}</p>
                  <DownloadControl repo={s.repo} token={hubToken.trim()} local={s.local} download={download} onStarted={(d) => setDownloads((all) => ({ ...all, [d.repo]: d }))} />
                </li>
              );
            })}
          </ul>
        )}
      </Card>

      <StepNav canNext={wizard.modelPath !== null} blocker="Choose a base model to go on." />
    </div>
  );
}

function DownloadControl({ repo, token, local, download, onStarted }: { repo: string; token: string; local: boolean; download: Download | undefined; onStarted: (d: Download) => void }) {
  const action = useAction();
  if (local && !download) return <Badge tone="good">on this computer</Badge>;
  const active = download && (download.status === 'queued' || download.status === 'downloading' || download.status === 'verifying');
  return (
    <div className="flex flex-col gap-2">
      {download && active && (
        <ProgressBar
          fraction={download.bytesTotal ? download.bytesDone / download.bytesTotal : null}
          label={`${download.status === 'verifying' ? 'Checking' : 'Downloading'} ${download.file ?? ''} · ${formatBytes(download.bytesDone)}${download.bytesTotal ? ` of ${formatBytes(download.bytesTotal)}` : ''}${download.bytesPerSecond ? ` · ${formatBytes(download.bytesPerSecond)}/s` : ''}`}
        />
      )}
      {download?.status === 'done' && <Badge tone="good">downloaded: choose it above</Badge>}
      {download?.status === 'failed' && <ErrorNotice error={new Error(download.error ?? 'The download failed.')} />}
      <div>
        {active ? (
          <Button onClick={() => void action.run(() => api.call('models.cancelDownload', { downloadId: download.downloadId }))}>Cancel download</Button>
        ) : (
          download?.status !== 'done' && (
            <Button disabled={action.running} onClick={() => void action.run(async () => onStarted(await api.call('models.startDownload', token ? { repo, token } : { repo })))}>
              Download
            </Button>
          )
        )}
      </div>
      {action.error ? <ErrorNotice error={action.error} /> : null}
    </div>
  );
}

export function formatParameters(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(1)}B` : n >= 1e6 ? `${Math.round(n / 1e6)}M` : `${Math.round(n / 1e3)}K`;
}
