// Settings: where the app keeps its data.
import { api } from '../api/client.ts';
import { Card, ErrorNotice, PageHeader, Spinner, Stat } from '../components/ui.tsx';
import { formatBytes } from '../format.ts';
import { useLoad } from '../hooks.ts';

export function SettingsPage() {
  const appData = useLoad(() => api.call('system.appData', {}), []);
  return (
    <div className="flex flex-col gap-4">
      <PageHeader title="Settings" />
      <Card title="App data">
        {appData.error ? <ErrorNotice error={appData.error} onRetry={appData.reload} /> : null}
        {!appData.data && appData.loading && <Spinner />}
        {appData.data && (
          <div className="flex flex-col gap-3 text-sm">
            <p className="text-stone-600 dark:text-stone-400">Adapters, training runs, logs and the shelf’s database live in this folder. Back it up to keep your work.</p>
            <code className="select-all rounded bg-stone-100 px-2 py-1 font-mono text-xs dark:bg-stone-950" data-testid="app-data-dir">
              {appData.data.dir}
            </code>
            <div className="grid grid-cols-2 gap-4">
              <Stat label="Shelf database" value={<span className="font-mono text-xs font-normal">{appData.data.libraryFile}</span>} />
              <Stat label="Free space there" value={formatBytes(appData.data.diskFreeBytes)} />
            </div>
          </div>
        )}
      </Card>
      <Card title="Connection">
        <p className="text-sm text-stone-600 dark:text-stone-400">
          {api.mode === 'electron' ? 'Running as the desktop app.' : 'Running in a browser, connected to the LoRA Studio server that printed this page’s address.'}
        </p>
      </Card>
    </div>
  );
}
