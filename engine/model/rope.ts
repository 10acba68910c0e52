// Rotary position embedding frequencies, computed as transformers 5.24 computes
// them (modeling_rope_utils.py and LlamaRotaryEmbedding.compute_default_rope_parameters),
// step by step in float32 as torch does:
//
//   default:  inv_freq[i] = 1 / theta^((2i) / d)            i = 0 .. d/2-1, d = head_dim
//   linear:   inv_freq[i] / factor
//   llama3:   wavelen = 2π / inv_freq
//             wavelen < orig/high_freq_factor  → inv_freq               (high frequencies kept)
//             wavelen > orig/low_freq_factor   → inv_freq / factor      (low frequencies scaled)
//             otherwise                        → (1 - s)·inv_freq/factor + s·inv_freq,
//                                                s = (orig/wavelen - low) / (high - low)
//
// Every torch float32 operation is mirrored by a Math.fround: a Python scalar
// operand is first rounded to float32, and `scalar / tensor` is evaluated by
// torch as `tensor.reciprocal() * scalar`. The power is taken in double and
// rounded once, which matches torch's float32 pow to within one unit in the
// last place (tests/unit/model-folder.test.ts compares against torch output).
import type { ModelConfig } from './config.ts';

const f = Math.fround;

export function computeInvFreq(cfg: Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float32Array {
  const dim = cfg.headDim;
  const half = dim / 2;
  const base = f(cfg.ropeTheta);
  const invFreq = new Float32Array(half); // [head_dim / 2]
  for (let i = 0; i < half; i++) {
    const exponent = f((2 * i) / dim); // arange(0, dim, 2).float() / dim
    invFreq[i] = f(1 / f(Math.pow(base, exponent))); // 1.0 / (base ** exponent)
  }

  const scaling = cfg.ropeScaling;
  if (scaling === null) return invFreq;
  if (scaling.type === 'linear') {
    const factor = f(scaling.factor);
    for (let i = 0; i < half; i++) invFreq[i] = f(invFreq[i]! / factor);
    return invFreq;
  }

  // llama3 (_compute_llama3_parameters)
  const factor = f(scaling.factor);
  const low = scaling.lowFreqFactor;
  const high = scaling.highFreqFactor;
  const oldContextLen = scaling.originalMaxPositionEmbeddings;
  const lowFreqWavelen = f(oldContextLen / low); // python float, compared against a float32 tensor
  const highFreqWavelen = f(oldContextLen / high);
  const twoPi = f(2 * Math.PI);
  const lowF = f(low);
  const highMinusLow = f(high - low);
  const oldContextLenF = f(oldContextLen);
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const inv = invFreq[i]!;
    const wavelen = f(f(1 / inv) * twoPi); // 2π / inv_freq
    const invLlama = wavelen > lowFreqWavelen ? f(inv / factor) : inv;
    const isMediumFreq = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    if (!isMediumFreq) {
      out[i] = invLlama;
      continue;
    }
    // smooth = (old_context_len / wavelen - low) / (high - low)
    const smooth = f(f(f(f(1 / wavelen) * oldContextLenF) - lowF) / highMinusLow);
    // (1 - smooth) * inv_llama / factor + smooth * inv_llama
    out[i] = f(f(f(f(1 - smooth) * invLlama) / factor) + f(smooth * invLlama));
  }
  return out;
}
