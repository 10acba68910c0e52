// Step 2: the training data. A file path; the backend reads it with the base
// model's tokenizer and reports its format, size, problems, and the first
// example with the trained tokens highlighted.
import { useEffect, useState } from 'react';
import { api, type DataReport } from '../api/client.ts';
import { Badge, Button, Card, ErrorNotice, Field, Stat, TextInput } from '../components/ui.tsx';
import { TrainedSpans } from '../components/TrainedSpans.tsx';
import { useAction } from '../hooks.ts';
import { updateWizard, useWizard } from './state.ts';
import { StepNav } from './WizardPage.tsx';

export function DataStep() {
  const wizard = useWizard();
  const [path, setPath] = useState(wizard.dataPath);
  const [report, setReport] = useState<DataReport | null>(null);
  const inspect = useAction();

  async function check(file: string) {
    if (!wizard.modelPath || !file.trim()) return;
    setReport(null);
    const result = await inspect.run(() => api.call('data.inspect', { model: wizard.modelPath!, data: file.trim(), maxSeqLen: wizard.method.seqLen }));
    if (result) {
      setReport(result);
      updateWizard({ dataPath: file.trim() });
    }
  }

  // Coming back to this step re-reads the kept file so the report is there again.
  useEffect(() => {
    if (wizard.dataPath) void check(wizard.dataPath);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  return (
    <div className="flex flex-col gap-4">
      <Card title="Training data">
        <form
          className="flex items-end gap-2"
          onSubmit={(e) => {
            e.preventDefault();
            void check(path);
          }}
        >
          <div className="flex-1">
            <Field label="Data file" hint="JSONL (chat, ShareGPT, Alpaca, prompt/completion, text), JSON, CSV or plain text.">
              {(id) => <TextInput id={id} value={path} onChange={(e) => setPath(e.target.value)} placeholder="/home/me/data/train.jsonl" className="w-full rounded-md border border-stone-300 bg-white px-2.5 py-1.5 font-mono text-sm dark:border-stone-700 dark:bg-stone-950" />}
            </Field>
          </div>
          <Button kind="primary" type="submit" disabled={!path.trim() || inspect.running}>
            {inspect.running ? 'Reading…' : 'Check data'}
          </Button>
        </form>
        {inspect.running && <p className="mt-2 text-sm text-stone-500" role="status">Reading every record with the model’s tokenizer…</p>}
        {inspect.error ? <div className="mt-3"><ErrorNotice error={inspect.error} /></div> : null}
      </Card>

      {report && <DataReportView report={report} />}

      <StepNav canNext={report !== null && report.examples > 0} blocker={report && report.examples === 0 ? 'This file has no usable examples.' : 'Check a data file to go on.'} />
    </div>
  );
}

function DataReportView({ report }: { report: DataReport }) {
  const trainedShare = report.tokens.total ? report.tokens.trained / report.tokens.total : 0;
  const warnings = [
    report.badRecords > 0 && `${report.badRecords} record(s) could not be read and are skipped.`,
    report.truncated > 0 && `${report.truncated} example(s) are longer than ${report.maxSeqLen} tokens and will be cut.`,
    report.dropped > 0 && `${report.dropped} example(s) are too long and left out.`,
    report.noTrainedTokens > 0 && `${report.noTrainedTokens} example(s) have nothing to learn from (no answer text).`,
    report.duplicates > 0 && `${report.duplicates} example(s) repeat an earlier one.`,
    report.chatTemplate === 'fallback' && 'The model has no chat template; a simple one is used.',
  ].filter((w): w is string => typeof w === 'string');
  return (
    <Card title="What the model will see" actions={<Badge tone="good">{report.format} · {report.container}</Badge>}>
      <div className="grid grid-cols-2 gap-4 md:grid-cols-4" data-testid="data-report">
        <Stat label="examples" value={report.examples} hint={`${report.records} records`} />
        <Stat label="tokens" value={report.tokens.total.toLocaleString()} hint={`${Math.round(trainedShare * 100)}% trained`} />
        <Stat label="length (tokens)" value={`${report.length.p50} median`} hint={`${report.length.min}–${report.length.max}`} />
        <Stat label="format" value={report.format} hint={`detected from ${report.container}`} />
      </div>
      {warnings.length > 0 && (
        <ul className="mt-4 flex flex-col gap-1 text-sm text-amber-800 dark:text-amber-300">
          {warnings.map((w) => (
            <li key={w}>⚠ {w}</li>
          ))}
        </ul>
      )}
      {report.problems.length > 0 && (
        <details className="mt-2 text-sm">
          <summary className="cursor-pointer">Problems ({report.problems.length})</summary>
          <ul className="mt-1 font-mono text-xs">
            {report.problems.slice(0, 20).map((p) => (
              <li key={`${p.file}:${p.line}`}>line {p.line}: {p.message}</li>
            ))}
          </ul>
        </details>
      )}
      {(report.renderedExamples ?? (report.firstExample ? [report.firstExample] : [])).map((example, i) => (
        <div className="mt-4" key={example.line} data-testid="rendered-example">
          <div className="mb-1 text-sm font-medium">
            {i === 0 ? 'First example' : `Example ${i + 1}`} (line {example.line}, {example.tokens} tokens)
            {i === 0 && (
              <>
                {' '}— <mark className="rounded bg-emerald-200 px-1 text-emerald-950 dark:bg-emerald-800 dark:text-emerald-50">highlighted</mark> text is what the model learns to write
              </>
            )}
          </div>
          <TrainedSpans spans={example.spans} />
        </div>
      ))}
    </Card>
  );
}
