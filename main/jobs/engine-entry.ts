// The engine side of the engine process protocol (engine-process.ts). Runs in
// a Node child process (messages over process.send / process.on('message'))
// or in an Electron utility process (process.parentPort); it checks which.
//
//   train    runTraining, every TrainEvent forwarded, then 'finished' with the TrainResult
//   resume   resumeTraining from a checkpoint folder (or an out folder's newest)
//   stop     aborts that job's signal: training writes a checkpoint and finishes
//            with reason 'stopped'; a comparison ends its current side 'cancelled'
//   compare  loads the base model once with every adapter, then generates the
//            prompt with the base (all adapters off) and with each adapter alone,
//            same seed and sampling, streaming tokens
// A UserError fails the job with kind 'user'; anything else with 'internal'.
import path from 'node:path';
import { EngineModel } from '../../engine/api.ts';
import { loadPeftAdapter } from '../../engine/adapters/peft.ts';
import { ModelTokenizer } from '../../engine/data/tokenizer.ts';
import { generate } from '../../engine/generate/generate.ts';
import { UserError } from '../../engine/model/errors.ts';
import { resumeTraining, runTraining } from '../../engine/train/run.ts';
import type { TrainEvent } from '../../engine/train/types.ts';
import type { CompareJobEvent, CompareJobRequest, CompareSide, FromEngine, ToEngine } from './engine-process.ts';

interface Transport {
  send(message: FromEngine): void;
  onMessage(listener: (message: ToEngine) => void): void;
}

/** Electron's utility process exposes process.parentPort; a Node child has process.send. */
interface ParentPort {
  on(event: 'message', listener: (e: { data: unknown }) => void): void;
  postMessage(message: unknown): void;
}

function transport(): Transport {
  const parentPort = (process as unknown as { parentPort?: ParentPort }).parentPort;
  if (parentPort) {
    return {
      send: (m) => parentPort.postMessage(m),
      onMessage: (l) => parentPort.on('message', (e) => l(e.data as ToEngine)),
    };
  }
  if (typeof process.send === 'function') {
    return {
      send: (m) => {
        if (process.connected) process.send!(m);
      },
      onMessage: (l) => process.on('message', (m) => l(m as ToEngine)),
    };
  }
  throw new Error('engine-entry: run me as a child process (process.send) or an Electron utility process (process.parentPort)');
}

const jobs = new Map<string, AbortController>();
let closing = false;

function failure(jobId: string, e: unknown): FromEngine {
  if (e instanceof UserError) return { type: 'failed', jobId, kind: 'user', message: e.message };
  return { type: 'failed', jobId, kind: 'internal', message: e instanceof Error ? e.message : String(e) };
}

async function runJob(port: Transport, message: Exclude<ToEngine, { type: 'stop' }>): Promise<void> {
  const { jobId } = message;
  if (jobs.has(jobId)) {
    port.send({ type: 'failed', jobId, kind: 'internal', message: `job ${jobId} is already running in this engine process` });
    return;
  }
  const controller = new AbortController();
  jobs.set(jobId, controller);
  try {
    let result: unknown;
    if (message.type === 'compare') {
      result = await compare(message.request, controller.signal, (event) => port.send({ type: 'event', jobId, event }));
    } else {
      const opts = { signal: controller.signal, onEvent: (event: TrainEvent) => port.send({ type: 'event', jobId, event }) };
      result = message.type === 'train'
        ? await runTraining(message.config, opts)
        : await resumeTraining(message.checkpoint, { ...opts, overrides: message.overrides });
    }
    port.send({ type: 'finished', jobId, result });
  } catch (e) {
    port.send(failure(jobId, e));
  } finally {
    jobs.delete(jobId);
    if (closing && jobs.size === 0) process.exit(0);
  }
}

/** Chat-templated prompt ids, like `lora-studio generate` without --raw. */
function promptIds(tokenizer: ModelTokenizer, prompt: string): number[] {
  try {
    return tokenizer.encodeChatPrompt([{ role: 'user', content: prompt }]);
  } catch (e) {
    throw new UserError(`the model's chat template refused the prompt (${(e as Error).message})`);
  }
}

export interface CompareJobResult {
  sides: Array<{ side: CompareSide; text: string | null; finishReason: string; generatedTokens: number; seconds: number }>;
}

async function compare(
  req: CompareJobRequest,
  signal: AbortSignal,
  emit: (e: CompareJobEvent) => void,
): Promise<CompareJobResult> {
  if (!Array.isArray(req.adapters) || req.adapters.length < 1 || req.adapters.length > 3)
    throw new UserError(`a comparison takes 1 to 3 adapters (got ${Array.isArray(req.adapters) ? req.adapters.length : 'none'})`);
  if (typeof req.prompt !== 'string' || req.prompt.trim() === '') throw new UserError('the comparison prompt is empty; type a prompt');
  const tokenizer = await ModelTokenizer.load(req.model);
  const ids = promptIds(tokenizer, req.prompt);
  const model = await EngineModel.load(req.model, { method: req.method, signal });
  try {
    const names = req.adapters.map((_, i) => `adapter${i}`);
    for (const [i, dir] of req.adapters.entries()) await loadPeftAdapter(model, path.resolve(dir), names[i]!);
    const eos = new Set(model.config.eosTokenIds);
    if (tokenizer.eosTokenId !== null) eos.add(tokenizer.eosTokenId);
    const sides: CompareSide[] = ['base', ...req.adapters.map((_, i) => i)];
    const result: CompareJobResult = { sides: [] };
    for (const side of sides) {
      for (const [i, n] of names.entries()) model.setAdapterEnabled(n, side === i);
      const it = generate(model, ids, {
        ...req.sampling,
        seed: req.seed,
        maxTokens: req.maxTokens,
        eosTokenIds: [...eos],
        decode: (t) => tokenizer.decode(t, true),
        signal,
      });
      let streamed = '';
      let step = await it.next();
      for (; !step.done; step = await it.next()) {
        if (step.value.text === '') continue;
        streamed += step.value.text;
        emit({ type: 'token', side, text: step.value.text });
      }
      const r = step.value;
      // Text held back to the end (what might have become a stop string) comes last,
      // so the streamed pieces joined are the whole output.
      const rest = (r.text ?? '').slice(streamed.length);
      if (rest !== '') emit({ type: 'token', side, text: rest });
      emit({ type: 'side-done', side, finishReason: r.finishReason });
      result.sides.push({ side, text: r.text, finishReason: r.finishReason, generatedTokens: r.generatedTokens, seconds: r.seconds });
      if (r.finishReason === 'cancelled') break;
    }
    return result;
  } finally {
    model.dispose();
  }
}

function main(): void {
  const port = transport();
  port.onMessage((message) => {
    if (message.type === 'stop') {
      jobs.get(message.jobId)?.abort();
      return;
    }
    void runJob(port, message);
  });
  // The app went away (Node child): stop every job cleanly (each writes its checkpoint), then leave.
  process.on('disconnect', () => {
    closing = true;
    if (jobs.size === 0) process.exit(0);
    for (const c of jobs.values()) c.abort();
  });
}

main();
