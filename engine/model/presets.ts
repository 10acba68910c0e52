// Shapes of well-known open models, for benchmarks and planning without the
// weights (the engine can build a random-weight model of any of them). Values
// are those of each model's published config.json.
import type { ModelConfig } from './config.ts';

function preset(c: Omit<ModelConfig, 'bosTokenId' | 'eosTokenIds' | 'torchDtype' | 'slidingWindow' | 'oProjBias' | 'mlpBias'> &
  Partial<Pick<ModelConfig, 'bosTokenId' | 'eosTokenIds'>>): ModelConfig {
  return { bosTokenId: null, eosTokenIds: [], torchDtype: 'bfloat16', slidingWindow: null, oProjBias: false, mlpBias: false, ...c };
}

const llama3Scaling = (factor: number) =>
  ({ type: 'llama3', factor, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 }) as const;

export const MODEL_PRESETS = {
  'SmolLM2-135M': preset({
    arch: 'llama', vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, numLayers: 30, numHeads: 9, numKvHeads: 3,
    headDim: 64, rmsNormEps: 1e-5, ropeTheta: 100000, ropeScaling: null, maxPositionEmbeddings: 8192,
    tieWordEmbeddings: true, attentionBias: false, qkNorm: false, bosTokenId: 1, eosTokenIds: [2],
  }),
  'SmolLM2-360M': preset({
    arch: 'llama', vocabSize: 49152, hiddenSize: 960, intermediateSize: 2560, numLayers: 32, numHeads: 15, numKvHeads: 5,
    headDim: 64, rmsNormEps: 1e-5, ropeTheta: 100000, ropeScaling: null, maxPositionEmbeddings: 8192,
    tieWordEmbeddings: true, attentionBias: false, qkNorm: false, bosTokenId: 1, eosTokenIds: [2],
  }),
  'SmolLM2-1.7B': preset({
    arch: 'llama', vocabSize: 49152, hiddenSize: 2048, intermediateSize: 8192, numLayers: 24, numHeads: 32, numKvHeads: 32,
    headDim: 64, rmsNormEps: 1e-5, ropeTheta: 130000, ropeScaling: null, maxPositionEmbeddings: 8192,
    tieWordEmbeddings: true, attentionBias: false, qkNorm: false, bosTokenId: 1, eosTokenIds: [2],
  }),
  'Llama-3.2-1B': preset({
    arch: 'llama', vocabSize: 128256, hiddenSize: 2048, intermediateSize: 8192, numLayers: 16, numHeads: 32, numKvHeads: 8,
    headDim: 64, rmsNormEps: 1e-5, ropeTheta: 500000, ropeScaling: llama3Scaling(32), maxPositionEmbeddings: 131072,
    tieWordEmbeddings: true, attentionBias: false, qkNorm: false, bosTokenId: 128000, eosTokenIds: [128001, 128008, 128009],
  }),
  'Llama-3.2-3B': preset({
    arch: 'llama', vocabSize: 128256, hiddenSize: 3072, intermediateSize: 8192, numLayers: 28, numHeads: 24, numKvHeads: 8,
    headDim: 128, rmsNormEps: 1e-5, ropeTheta: 500000, ropeScaling: llama3Scaling(32), maxPositionEmbeddings: 131072,
    tieWordEmbeddings: true, attentionBias: false, qkNorm: false, bosTokenId: 128000, eosTokenIds: [128001, 128008, 128009],
  }),
  'Llama-3.1-8B': preset({
    arch: 'llama', vocabSize: 128256, hiddenSize: 4096, intermediateSize: 14336, numLayers: 32, numHeads: 32, numKvHeads: 8,
    headDim: 128, rmsNormEps: 1e-5, ropeTheta: 500000, ropeScaling: llama3Scaling(8), maxPositionEmbeddings: 131072,
    tieWordEmbeddings: false, attentionBias: false, qkNorm: false, bosTokenId: 128000, eosTokenIds: [128001, 128008, 128009],
  }),
  'Mistral-7B': preset({
    arch: 'mistral', vocabSize: 32768, hiddenSize: 4096, intermediateSize: 14336, numLayers: 32, numHeads: 32, numKvHeads: 8,
    headDim: 128, rmsNormEps: 1e-5, ropeTheta: 1000000, ropeScaling: null, maxPositionEmbeddings: 32768,
    tieWordEmbeddings: false, attentionBias: false, qkNorm: false, bosTokenId: 1, eosTokenIds: [2],
  }),
  'Qwen2.5-7B': preset({
    arch: 'qwen2', vocabSize: 152064, hiddenSize: 3584, intermediateSize: 18944, numLayers: 28, numHeads: 28, numKvHeads: 4,
    headDim: 128, rmsNormEps: 1e-6, ropeTheta: 1000000, ropeScaling: null, maxPositionEmbeddings: 32768,
    tieWordEmbeddings: false, attentionBias: true, qkNorm: false, eosTokenIds: [151645, 151643],
  }),
} satisfies Record<string, ModelConfig>;

export type ModelPresetName = keyof typeof MODEL_PRESETS;
export const MODEL_PRESET_NAMES = Object.keys(MODEL_PRESETS) as ModelPresetName[];
