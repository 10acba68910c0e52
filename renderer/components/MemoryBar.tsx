// The memory estimate as one stacked bar: a segment per category (bytes),
// drawn against the machine's usable memory. The bar's full width is
// max(usable, total), so an over-budget run visibly overflows the capacity line.
// With a correction from runs measured on this machine, the total is the
// corrected one: the bytes it adds are drawn as one more segment, and the
// sentence says where they come from.
import { formatBytes } from '../format.ts';

export interface MemorySegment {
  name: string;
  bytes: number;
}

const colors = ['bg-sky-500', 'bg-violet-500', 'bg-amber-500', 'bg-emerald-500', 'bg-rose-500', 'bg-teal-500', 'bg-stone-400', 'bg-fuchsia-500'];

const explanations: Record<string, string> = {
  base: 'the frozen base model’s weights',
  adapters: 'the small LoRA matrices being trained',
  gradients: 'gradients of the adapter weights',
  optimizer: 'Adam’s two running averages per adapter weight',
  activations: 'values kept from the forward pass for the backward pass',
  workspace: 'scratch space for the maths',
  'measured here': 'added because earlier runs on this machine used more than estimated',
};

/** The corrected total (bytes) and its plain sentence, e.g. "corrected by 3 earlier LoRA runs on this machine: activations +4%". */
export interface MemoryCorrection {
  totalBytes: number;
  sentence: string;
}

export function MemoryBar({ segments: plain, usableBytes, label, correction }: { segments: MemorySegment[]; usableBytes: number; label: string; correction?: MemoryCorrection | undefined }) {
  const plainTotal = plain.reduce((sum, s) => sum + s.bytes, 0);
  const extra = correction ? Math.max(0, correction.totalBytes - plainTotal) : 0;
  const segments = extra > 0 ? [...plain, { name: 'measured here', bytes: extra }] : plain;
  const total = plainTotal + extra;
  const scale = Math.max(total, usableBytes, 1);
  const fits = total <= usableBytes;
  return (
    <figure className="flex flex-col gap-2" data-testid="memory-bar" data-fits={fits}>
      <div className="flex items-baseline justify-between text-sm">
        <span className="font-medium">
          {formatBytes(total)} needed of {formatBytes(usableBytes)} {label}
        </span>
        <span className={fits ? 'text-emerald-700 dark:text-emerald-400' : 'font-semibold text-red-700 dark:text-red-400'}>
          {fits ? `fits, ${formatBytes(usableBytes - total)} to spare` : `does not fit: ${formatBytes(total - usableBytes)} short`}
        </span>
      </div>
      {correction && (
        <p className="text-xs text-stone-600 dark:text-stone-400" data-testid="memory-correction">
          {correction.sentence.charAt(0).toUpperCase() + correction.sentence.slice(1)}.
        </p>
      )}
      <div className="relative h-6 w-full overflow-hidden rounded-md bg-stone-200 dark:bg-stone-800" role="img" aria-label={`Memory: ${formatBytes(total)} of ${formatBytes(usableBytes)}`}>
        <div className="flex h-full">
          {segments.map((s, i) => (
            <div key={s.name} className={`h-full ${colors[i % colors.length]}`} style={{ width: `${(s.bytes / scale) * 100}%` }} title={`${s.name}: ${formatBytes(s.bytes)}`} />
          ))}
        </div>
        <div className="absolute inset-y-0 border-r-2 border-dashed border-stone-900 dark:border-stone-100" style={{ left: `${(usableBytes / scale) * 100}%` }} title="what this machine has free" />
      </div>
      <figcaption className="grid grid-cols-2 gap-x-4 gap-y-1 text-xs text-stone-600 sm:grid-cols-3 dark:text-stone-400">
        {segments.map((s, i) => (
          <span key={s.name} className="flex items-center gap-1.5" title={explanations[s.name]}>
            <span className={`inline-block h-2.5 w-2.5 rounded-sm ${colors[i % colors.length]}`} />
            {s.name} <span className="tabular-nums">{formatBytes(s.bytes)}</span>
          </span>
        ))}
      </figcaption>
    </figure>
  );
}
