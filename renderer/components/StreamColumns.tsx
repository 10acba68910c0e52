// Outputs side by side as they stream in: one column per side.
import type { SideOutput } from './useComparison.ts';

export function StreamColumns({ columns }: { columns: { key: string; title: string; output: SideOutput | undefined }[] }) {
  return (
    <div className={`grid gap-3 ${columns.length > 2 ? 'md:grid-cols-2 xl:grid-cols-4' : 'md:grid-cols-2'}`} data-testid="stream-columns">
      {columns.map(({ key, title, output }) => (
        <article key={key} className="flex flex-col rounded-lg border border-stone-200 dark:border-stone-800" data-side={key} data-done={output?.done ?? false}>
          <header className="flex items-center justify-between border-b border-stone-200 px-3 py-2 text-sm font-medium dark:border-stone-800">
            <span>{title}</span>
            <span className="text-xs font-normal text-stone-500">
              {output?.done ? `${output.generatedTokens ?? 0} tokens${output.seconds ? ` · ${output.seconds.toFixed(1)} s` : ''}` : output ? 'writing…' : 'waiting…'}
            </span>
          </header>
          <p className="min-h-24 whitespace-pre-wrap p-3 text-sm" data-testid="stream-text">
            {output?.text ?? ''}
            {output && !output.done && <span className="ml-0.5 inline-block h-4 w-1.5 animate-pulse bg-stone-400 align-middle" />}
          </p>
        </article>
      ))}
    </div>
  );
}
