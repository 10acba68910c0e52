// The engine process protocol: the messages between the app's main process and
// the process that runs the engine (a Node child process, or an Electron
// utility process), and the handle the job manager holds on that process.
// Every message is JSON-serialisable; the engine side is engine-entry.ts.
import type { FinishReason } from '../../engine/generate/generate.ts';
import type { SamplingOptions } from '../../engine/generate/sampler.ts';
import type { TrainConfig, TrainEvent } from '../../engine/train/types.ts';

/** A side of a comparison: the base model, or the adapter at this index of `adapters`. */
export type CompareSide = 'base' | number;

/** One prompt generated with the base model and with each adapter in turn (same seed). */
export interface CompareJobRequest {
  /** Base model folder (Hugging Face layout). */
  model: string;
  method: 'lora' | 'qlora';
  /** PEFT adapter folders, 1 to 3. */
  adapters: string[];
  /** The user message; the model's chat template is applied when it has one. */
  prompt: string;
  sampling: Omit<SamplingOptions, 'seed'>;
  seed: number;
  maxTokens: number;
}

export type CompareJobEvent =
  | { type: 'token'; side: CompareSide; text: string }
  | { type: 'side-done'; side: CompareSide; finishReason: FinishReason };

/** Messages main → engine process, and engine process → main. JSON-serialisable. */
export type ToEngine =
  | { type: 'train'; jobId: string; config: TrainConfig }
  | { type: 'resume'; jobId: string; checkpoint: string; overrides?: Partial<TrainConfig> }
  | { type: 'compare'; jobId: string; request: CompareJobRequest }
  | { type: 'stop'; jobId: string };

export type FromEngine =
  | { type: 'event'; jobId: string; event: TrainEvent | CompareJobEvent }
  | { type: 'finished'; jobId: string; result: unknown }
  | { type: 'failed'; jobId: string; kind: 'user' | 'internal'; message: string };

/** How the engine process ended. */
export interface EngineExit {
  code: number | null;
  signal: string | null;
  /** 'exit' (code), 'signal' (killed), 'crash' (native fault / out of memory) */
  reason: 'exit' | 'signal' | 'crash';
  /** A sentence for people, e.g. "the engine ran out of memory". */
  detail?: string;
}

export interface EngineProcess {
  send(message: ToEngine): void;
  onMessage(listener: (message: FromEngine) => void): void;
  /** reason: 'exit' (code), 'signal' (killed), 'crash' (native fault / out of memory) */
  onExit(listener: (exit: EngineExit) => void): void;
  kill(): void;
}

export type EngineLauncher = () => EngineProcess;
