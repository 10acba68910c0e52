// An example as the model sees it, with the tokens it learns from highlighted
// (label != -100) and the prompt part dimmed.
export function TrainedSpans({ spans }: { spans: { text: string; trained: boolean }[] }) {
  return (
    <pre className="max-h-64 overflow-auto whitespace-pre-wrap rounded-md bg-stone-100 p-3 font-mono text-xs leading-relaxed dark:bg-stone-950" data-testid="trained-spans">
      {spans.map((span, i) =>
        span.trained ? (
          <mark key={i} className="rounded bg-emerald-200 px-0.5 text-emerald-950 dark:bg-emerald-800 dark:text-emerald-50" title="trained: the model learns to write this">
            {span.text}
          </mark>
        ) : (
          <span key={i} className="text-stone-500">
            {span.text}
          </span>
        ),
      )}
    </pre>
  );
}
