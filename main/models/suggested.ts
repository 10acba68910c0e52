// Instruct models worth starting from, with their shapes (the values of each
// repo's published config.json) so the memory estimator can say, before any
// download, which fit this machine and how (engine/estimate/fit.ts).
//
// Parameter counts are computed from the shapes; download sizes are
// approximate: the bf16 safetensors weights at 2 bytes a parameter, plus a few
// MB of tokenizer and config files (the repos publish bf16 weights).
import type { ModelArch, ModelConfig } from '../../engine/model/config.ts';
import { MODEL_PRESETS } from '../../engine/model/presets.ts';
import type { EstimateDevice } from '../../engine/estimate/device.ts';
import { fitSettings, type FitResult } from '../../engine/estimate/fit.ts';
import type { TrainMethod } from '../../engine/estimate/plan.ts';

export interface SuggestedModel {
  repo: string; // Hugging Face id
  name: string;
  architecture: ModelArch;
  config: ModelConfig;
  parameterCount: number; // computed from config
  downloadBytes: number; // approximate, see above
  licence: string; // the repo's licence tag
  gated: boolean; // the hub asks to accept terms (and a token) before downloading
  note: string; // why it is on the list, in words
}

const TOKENIZER_ALLOWANCE_BYTES = 12 * 1024 * 1024; // tokenizer.json and configs: 2-17 MB across these repos

// Qwen2.5 instruct models below 7B; the 7B's shape is the preset's.
function qwen25(hiddenSize: number, intermediateSize: number, numLayers: number, numHeads: number, headDim: number): ModelConfig {
  return {
    arch: 'qwen2', vocabSize: 151936, hiddenSize, intermediateSize, numLayers, numHeads, numKvHeads: 2, headDim,
    rmsNormEps: 1e-6, ropeTheta: 1_000_000, ropeScaling: null, maxPositionEmbeddings: 32768, tieWordEmbeddings: true,
    attentionBias: true, oProjBias: false, mlpBias: false, qkNorm: false, bosTokenId: null, eosTokenIds: [151645, 151643],
    torchDtype: 'bfloat16', slidingWindow: null,
  };
}

type Entry = Omit<SuggestedModel, 'parameterCount' | 'downloadBytes' | 'architecture'>;
const ENTRIES: Entry[] = [
  { repo: 'HuggingFaceTB/SmolLM2-135M-Instruct', name: 'SmolLM2 135M Instruct', config: MODEL_PRESETS['SmolLM2-135M'], licence: 'apache-2.0', gated: false,
    note: 'Tiny: trains in minutes even on a CPU; good for learning the workflow.' },
  { repo: 'HuggingFaceTB/SmolLM2-360M-Instruct', name: 'SmolLM2 360M Instruct', config: MODEL_PRESETS['SmolLM2-360M'], licence: 'apache-2.0', gated: false,
    note: 'Small and quick to train on a CPU; for narrow tasks and experiments.' },
  { repo: 'Qwen/Qwen2.5-0.5B-Instruct', name: 'Qwen2.5 0.5B Instruct', config: qwen25(896, 4864, 24, 14, 64), licence: 'apache-2.0', gated: false,
    note: 'Small, multilingual, good at following formats; runs on a CPU.' },
  { repo: 'meta-llama/Llama-3.2-1B-Instruct', name: 'Llama 3.2 1B Instruct', config: MODEL_PRESETS['Llama-3.2-1B'], licence: 'llama3.2', gated: true,
    note: 'Small Llama with a long context; needs the Llama 3.2 licence accepted on the hub.' },
  { repo: 'Qwen/Qwen2.5-1.5B-Instruct', name: 'Qwen2.5 1.5B Instruct', config: qwen25(1536, 8960, 28, 12, 128), licence: 'apache-2.0', gated: false,
    note: 'A good balance of quality and speed on a modest GPU.' },
  { repo: 'HuggingFaceTB/SmolLM2-1.7B-Instruct', name: 'SmolLM2 1.7B Instruct', config: MODEL_PRESETS['SmolLM2-1.7B'], licence: 'apache-2.0', gated: false,
    note: 'The largest SmolLM2; English, openly licensed.' },
  { repo: 'Qwen/Qwen2.5-3B-Instruct', name: 'Qwen2.5 3B Instruct', config: qwen25(2048, 11008, 36, 16, 128), licence: 'qwen-research', gated: false,
    note: 'Strong for its size; its licence is for research and non-commercial use.' },
  { repo: 'meta-llama/Llama-3.2-3B-Instruct', name: 'Llama 3.2 3B Instruct', config: MODEL_PRESETS['Llama-3.2-3B'], licence: 'llama3.2', gated: true,
    note: 'Mid-size Llama; fits 8 GB cards with QLoRA.' },
  { repo: 'mistralai/Mistral-7B-Instruct-v0.3', name: 'Mistral 7B Instruct v0.3', config: MODEL_PRESETS['Mistral-7B'], licence: 'apache-2.0', gated: true,
    note: 'A capable 7B with an open licence; the hub asks to share contact details first.' },
  { repo: 'Qwen/Qwen2.5-7B-Instruct', name: 'Qwen2.5 7B Instruct', config: MODEL_PRESETS['Qwen2.5-7B'], licence: 'apache-2.0', gated: false,
    note: 'High quality, multilingual, strong at code and structured output; QLoRA on 12 GB and up.' },
  { repo: 'meta-llama/Llama-3.1-8B-Instruct', name: 'Llama 3.1 8B Instruct', config: MODEL_PRESETS['Llama-3.1-8B'], licence: 'llama3.1', gated: true,
    note: 'The reference 8B; QLoRA on 12 GB and up.' },
];

/** Elements of every weight the engine loads, from the shape alone (a tied embedding counted once). */
export function parameterCountOf(c: ModelConfig): number {
  const H = c.hiddenSize, I = c.intermediateSize;
  const q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  let layer = 2 * H + H * q + 2 * H * kv + q * H + 3 * H * I;
  if (c.attentionBias) layer += q + 2 * kv;
  if (c.oProjBias) layer += H;
  if (c.mlpBias) layer += 2 * I + H;
  if (c.qkNorm) layer += 2 * c.headDim;
  return c.vocabSize * H * (c.tieWordEmbeddings ? 1 : 2) + H + c.numLayers * layer;
}

export const SUGGESTED_MODELS: readonly SuggestedModel[] = ENTRIES.map((e) => {
  const parameterCount = parameterCountOf(e.config);
  return { ...e, architecture: e.config.arch, parameterCount, downloadBytes: parameterCount * 2 + TOKENIZER_ALLOWANCE_BYTES };
}).sort((a, b) => a.parameterCount - b.parameterCount);

/** "135M", "1.5B", "8B": a parameter count as people name model sizes. */
export function sizeLabel(parameterCount: number): string {
  if (parameterCount >= 1e9) return `${Number((parameterCount / 1e9).toFixed(parameterCount >= 9.95e9 ? 0 : 1))}B`;
  return `${Math.round(parameterCount / 1e6)}M`;
}

// Training on a CPU is bounded by time before memory: a LoRA step still runs
// the whole model forward and backward, about 6 FLOP per parameter per
// trained token; at the ~1 TFLOP/s of a fast desktop CPU a 2B model trains
// about 80 tokens/s (a 1M-token dataset in about 3.5 hours), an 8B one four
// times slower. Larger models are not suggested for a CPU even when they fit in RAM.
export const CPU_PRACTICAL_MAX_PARAMETERS = 2e9;
/** Sequence length the suggestions are judged at (tokens), unless the model's context is shorter. */
export const SUGGESTION_SEQ_LEN = 1024;

export interface DeviceFit {
  device: string; // the device's name
  kind: 'cpu' | 'gpu';
  method: TrainMethod;
  checkpointing: boolean;
  seqLen: number;
  batch: number;
  rank: number;
  peakBytes: number; // the estimate's total
}

export interface Suggestion {
  model: SuggestedModel;
  /** The best way to train it here: the first device (GPUs first) where it fits, LoRA before QLoRA; null when none. */
  best: DeviceFit | null;
  fitsLora: boolean;
  fitsQlora: boolean;
  /** Why it does not fit, when it does not. */
  reason: string | null;
}

export interface SuggestOptions {
  seqLen?: number; // default SUGGESTION_SEQ_LEN
}

/** How one model fits one device with one method at the suggestion's sequence length; null when it does not. */
export function fitOn(config: ModelConfig, name: string, device: EstimateDevice, method: TrainMethod, seqLen = SUGGESTION_SEQ_LEN): DeviceFit | null {
  if (device.kind === 'cpu' && parameterCountOf(config) > CPU_PRACTICAL_MAX_PARAMETERS) return null;
  const result: FitResult = fitSettings({ name, config, source: 'preset', dir: null }, device, { method, seqLen: Math.min(seqLen, config.maxPositionEmbeddings) });
  if (!result.found || !result.choices || !result.estimate) return null;
  const c = result.choices;
  return { device: device.name, kind: device.kind, method, checkpointing: c.checkpointing, seqLen: c.seqLen, batch: c.batch, rank: c.rank, peakBytes: result.estimate.totalBytes };
}

/** Which suggested models fit this machine's devices (a device list, or main/system's SystemInfo), and with which method. */
export function suggestFor(machine: readonly EstimateDevice[] | { devices: readonly EstimateDevice[] }, opts: SuggestOptions = {}): Suggestion[] {
  const devices: readonly EstimateDevice[] = 'devices' in machine ? machine.devices : machine;
  const ordered = [...devices].sort((a, b) => Number(b.kind === 'gpu') - Number(a.kind === 'gpu'));
  return SUGGESTED_MODELS.map((model) => {
    let best: DeviceFit | null = null;
    let fitsLora = false;
    let fitsQlora = false;
    for (const device of ordered) {
      const lora = fitOn(model.config, model.name, device, 'lora', opts.seqLen);
      const qlora = lora ?? fitOn(model.config, model.name, device, 'qlora', opts.seqLen);
      fitsLora ||= lora !== null;
      fitsQlora ||= qlora !== null;
      best ??= lora ?? qlora;
    }
    const cpuOnly = ordered.every((d) => d.kind === 'cpu');
    const reason = best
      ? null
      : cpuOnly && model.parameterCount > CPU_PRACTICAL_MAX_PARAMETERS
        ? `${sizeLabel(model.parameterCount)} parameters is too slow to train on a CPU; it needs a GPU.`
        : `Does not fit the memory of ${ordered.map((d) => d.name).join(' or ') || 'this machine'} even with QLoRA at ${Math.min(opts.seqLen ?? SUGGESTION_SEQ_LEN, model.config.maxPositionEmbeddings)} tokens.`;
    return { model, best, fitsLora, fitsQlora, reason };
  });
}
