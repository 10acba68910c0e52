// This computer: CPU, RAM, GPUs (VRAM, driver), free disk, and in plain words
// what it can train.
import { api } from '../api/client.ts';
import { Badge, Card, ErrorNotice, PageHeader, Spinner, Stat } from '../components/ui.tsx';
import { formatBytes } from '../format.ts';
import { useLoad } from '../hooks.ts';

export function SystemPage() {
  const hardware = useLoad(() => api.call('system.hardware', {}), []);
  const capacity = useLoad(() => api.call('system.capacity', {}), []);
  const h = hardware.data;
  const c = capacity.data;
  return (
    <div className="flex flex-col gap-4">
      <PageHeader title="This computer" subtitle="What LoRA Studio found on this machine, and what it can train here." />
      {hardware.error ? <ErrorNotice error={hardware.error} onRetry={hardware.reload} /> : null}
      {!h && hardware.loading && <Spinner label="Looking at the hardware…" />}
      {h && (
        <div className="grid gap-4 md:grid-cols-3">
          <Card title="Processor">
            <Stat label={h.cpuModel || 'CPU'} value={`${h.cpuThreads} threads`} />
          </Card>
          <Card title="Memory (RAM)">
            <Stat label="total" value={formatBytes(h.ramTotalBytes)} hint={`${formatBytes(h.ramAvailableBytes)} free now`} />
          </Card>
          <Card title="Free disk">
            <Stat label="for models and adapters" value={formatBytes(c?.diskFreeBytes)} />
          </Card>
        </div>
      )}
      {h && (
        <Card title="Graphics cards">
          {h.gpus.length === 0 ? (
            <p className="text-sm text-stone-600 dark:text-stone-400" data-testid="no-gpu">
              No graphics card was found, so training runs on the processor. That works for small models (up to a few hundred million parameters) and is slower.
            </p>
          ) : (
            <table className="w-full text-left text-sm">
              <thead className="text-xs uppercase text-stone-500">
                <tr>
                  <th className="py-1">Card</th>
                  <th>Memory (VRAM)</th>
                  <th>Free</th>
                  <th>Driver</th>
                </tr>
              </thead>
              <tbody>
                {h.gpus.map((gpu) => (
                  <tr key={gpu.index} className="border-t border-stone-200 dark:border-stone-800">
                    <td className="py-1.5">{gpu.name}</td>
                    <td className="tabular-nums">{formatBytes(gpu.totalBytes)}</td>
                    <td className="tabular-nums">{formatBytes(gpu.freeBytes)}</td>
                    <td>{gpu.driver ?? '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {h.notes.length > 0 && (
            <ul className="mt-3 list-disc pl-5 text-xs text-stone-500">
              {h.notes.map((note) => (
                <li key={note}>{note}</li>
              ))}
            </ul>
          )}
        </Card>
      )}
      <Card title="What this machine can train">
        {capacity.error ? <ErrorNotice error={capacity.error} onRetry={capacity.reload} /> : null}
        {!c && capacity.loading && <Spinner label="Working out what fits…" />}
        {c && (
          <div className="flex flex-col gap-3" data-testid="capacity">
            <ul className="flex flex-col gap-1 text-sm">
              {c.summary.map((line) => (
                <li key={line}>• {line}</li>
              ))}
            </ul>
            <div className="flex flex-wrap gap-2">
              {c.devices.map((device, i) => (
                <Badge key={`${device.name}-${i}`} tone={i === c.preferred ? 'good' : 'neutral'}>
                  {device.kind === 'gpu' ? 'GPU' : 'CPU'} {device.name}: {formatBytes(device.availableBytes ?? device.totalBytes)}
                  {i === c.preferred ? ' (used for training)' : ''}
                </Badge>
              ))}
            </div>
          </div>
        )}
      </Card>
    </div>
  );
}
