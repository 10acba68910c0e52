// The decoder-only transformer of the Llama family (Llama 2/3.x, Mistral,
// Qwen2 with q/k/v biases, Qwen3 with per-head q/k RMSNorm; SmolLM and
// TinyLlama are Llama) with a frozen base, LoRA adapters keyed by name, and a
// hand-written backward that produces gradients for adapter parameters only.
//
// Dimension legend (as in kernels/ops.h):
//   B batch   T tokens per sequence   N = B*T token rows
//   D hidden  F intermediate  V vocab  L layers
//   H query heads  KV key/value heads  Hd head dim  r LoRA rank
//
// One layer, for x [N,D]:
//   h1   = rmsnorm(x) · w_in                               [N,D]
//   q    = h1·Wqᵀ (+bq) + Σ_adapters s·(drop(h1)·Aqᵀ)·Bqᵀ   [N,H*Hd]  (k, v alike)
//   q,k  = rmsnorm_per_head(q,k) (Qwen3), then RoPE
//   att  = causal GQA attention(q, k, v)                    [N,H*Hd]
//   xm   = x + att·Woᵀ (+LoRA)                              [N,D]
//   h2   = rmsnorm(xm) · w_post                             [N,D]
//   act  = silu(h2·Wgᵀ) ⊙ (h2·Wuᵀ)            (+LoRA each)   [N,F]
//   out  = xm + act·Wdᵀ (+LoRA)                             [N,D]
// Loss: rmsnorm(x_L) · w_final, logits = h·W_lmᵀ computed a chunk of token rows
// at a time, cross-entropy against labels shifted by one (HF convention).
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/memory.h"
#include "kernels/gemm.h"

namespace ls {

// Thrown from inside a long call when cancel() was requested.
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("cancelled") {}
};

// Thrown for a request that is invalid for the model's current state (the
// TypeScript layer checks most input; these are the state-dependent ones).
struct StateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum Proj : int { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kProjCount };
const char* proj_name(int p);

struct ModelConfig {
  int64_t vocab = 0, hidden = 0, intermediate = 0, layers = 0;
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  float rms_eps = 1e-6f;
  bool qkv_bias = false, o_bias = false, mlp_bias = false, qk_norm = false, tied = false;
  std::vector<float> inv_freq;  // [head_dim/2], computed by the caller (engine/model/rope.ts)
};

// How the frozen base is held: bf16 (LoRA), NF4 (QLoRA), or fp32 (tests).
enum class BaseFormat : int { BF16 = 0, NF4 = 1, F32 = 2 };

// A frozen linear layer W [out, in] (+ optional bias [out], always fp32).
struct LinearWeight {
  DType dtype = DType::F32;
  int64_t out = 0, in = 0;
  Buffer<float> f32;           // [out, in]       (F32)
  Buffer<uint16_t> bf16;       // [out, in]       (BF16)
  Buffer<uint8_t> nf4_packed;  // [out*in/2]      (NF4)
  Buffer<uint8_t> nf4_absmax;  // [out*in/64]     (NF4, double-quantized codes)
  Buffer<float> nf4_scale;     // [ceil(out*in/64/256)]
  float nf4_mean = 0.f;
  Buffer<float> bias;          // [out] or empty
  WeightRef ref() const;
  int64_t bytes() const;
};

struct LayerWeights {
  Buffer<float> input_norm, post_norm;  // [D]
  Buffer<float> q_norm, k_norm;         // [Hd] (Qwen3) or empty
  std::array<LinearWeight, kProjCount> proj;
};

// One adapted projection of one layer: y += scale · (drop(x)·Aᵀ)·Bᵀ.
struct LoraModule {
  int64_t in = 0, out = 0;
  Buffer<float> A, B;           // [r, in], [out, r]        (Adapters)
  Buffer<float> gA, gB;         // gradients                 (Gradients)
  Buffer<float> mA, vA, mB, vB; // AdamW moments             (Optimizer)
};

struct AdapterSpec {
  std::string name;
  int64_t rank = 8;
  float alpha = 16.f;
  float dropout = 0.f;
  bool rslora = false;
  uint32_t target_mask = 0;  // bit p set = projection p adapted
  uint64_t seed = 0;         // initialisation of A
};

struct Adapter {
  AdapterSpec spec;
  float scale = 0.f;  // alpha / r, or alpha / sqrt(r) with rsLoRA
  bool enabled = true;
  bool trainable = true;
  bool merged = false;
  int64_t optimizer_steps = 0;
  std::vector<std::array<std::unique_ptr<LoraModule>, kProjCount>> layers;
};

struct TrainBatch {
  int64_t batch = 1, seq = 1;      // B, T
  const int32_t* input_ids;        // [B*T]
  const int32_t* labels;           // [B*T], -100 = not trained; logits[t] scored vs labels[t+1]
  const int32_t* positions;        // [B*T] or null (0..T-1 per sequence)
  const int32_t* segments;         // [B*T] or null (packed examples)
  float grad_scale = 1.f;          // usually 1 / trained tokens of the whole optimizer step
  uint64_t dropout_seed = 0;       // makes LoRA dropout masks reproducible
};

struct LossResult {
  double loss_sum = 0;   // Σ cross-entropy over trained tokens
  int64_t tokens = 0;    // trained tokens
};

struct OptimizerSettings {
  float lr = 1e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.f;
  float max_grad_norm = 1.f;  // <= 0: no clipping
};

// Key/value cache for generation: [L][B, capacity, KV*Hd] each.
struct KvCache {
  int64_t batch = 1, capacity = 0, length = 0;
  std::vector<Buffer<float>> k, v;
};

class Model {
 public:
  Model(const ModelConfig& cfg, BaseFormat format);
  ~Model();

  const ModelConfig& config() const { return cfg_; }
  BaseFormat format() const { return format_; }

  // ---- weights (used by the loader) -------------------------------------
  // Each setter converts from the source dtype (F32/F16/BF16 raw bytes) into
  // the base format; projections are quantized to NF4 when format is NF4.
  void set_embedding(DType src, const void* data);
  void set_lm_head(DType src, const void* data);  // untied only
  void set_final_norm(DType src, const void* data);
  void set_norm(int64_t layer, int which /*0 in,1 post,2 q,3 k*/, DType src, const void* data);
  void set_projection(int64_t layer, int proj, DType src, const void* data);
  void set_bias(int64_t layer, int proj, DType src, const void* data);
  // Random weights (normal, std) for benchmarks: no file needed.
  void init_random(uint64_t seed, float std);

  // ---- adapters ------------------------------------------------------------
  void add_adapter(const AdapterSpec& spec);
  void remove_adapter(const std::string& name);
  Adapter& adapter(const std::string& name);
  std::vector<std::string> adapter_names() const;
  void set_adapter_enabled(const std::string& name, bool enabled);
  void set_adapter_trainable(const std::string& name, bool trainable);
  void merge_adapter(const std::string& name);    // into a bf16/fp32 base
  void unmerge_adapter(const std::string& name);
  // which: 0 A, 1 B, 2 gA, 3 gB, 4 mA, 5 vA, 6 mB, 7 vB
  Buffer<float>& adapter_tensor(const std::string& name, int64_t layer, int proj, int which);

  // ---- compute ----------------------------------------------------------------
  // Forward + backward of one micro-batch; gradients are ADDED to the
  // gradient buffers of enabled, trainable, unmerged adapters.
  LossResult train_step(const TrainBatch& b, bool checkpointing);
  // Forward only (evaluation).
  LossResult eval_loss(const TrainBatch& b);
  // Clip by global norm, AdamW, zero gradients. Returns the pre-clip norm.
  double optimizer_step(const OptimizerSettings& o);
  void zero_grad();
  // Generation: run `count` new tokens per sequence ([B, count]) through the
  // model at positions cache.length..; appends to the cache. Writes logits
  // [B, count, V] if all_positions, else [B, V] of the last new token.
  void forward_cached(KvCache& cache, const int32_t* tokens, int64_t count, bool all_positions,
                      float* logits);
  std::unique_ptr<KvCache> new_cache(int64_t batch, int64_t capacity);

  void request_cancel() { cancel_.store(true); }
  void clear_cancel() { cancel_.store(false); }

  int64_t base_bytes() const;

 private:
  struct LayerActs;
  struct Scratch;
  void check_cancel() const {
    if (cancel_.load(std::memory_order_relaxed)) throw Cancelled();
  }
  LossResult run(const TrainBatch& b, bool backward, bool checkpointing);
  void layer_forward(int64_t l, const float* x, float* out, LayerActs& a, const TrainBatch* b,
                     KvCache* cache, Scratch& s);
  void layer_backward(int64_t l, LayerActs& a, const TrainBatch& b, float* dx, Scratch& s);
  void linear(int64_t l, int p, const float* x, int64_t N, float* y, LayerActs* a,
              uint64_t dropout_seed, Scratch& s);
  void linear_backward(int64_t l, int p, const float* x, const float* dy, int64_t N, float* dx,
                       bool accumulate, LayerActs& a, uint64_t dropout_seed, Scratch& s);
  WeightRef lm_head_ref() const;
  std::vector<Adapter*> active_adapters(int64_t l, int p);
  void add_adapter_delta(Adapter& a, float sign);

  ModelConfig cfg_;
  BaseFormat format_;
  DType embed_dtype_;            // BF16 or F32
  Buffer<uint16_t> embed_bf16_;  // [V, D]
  Buffer<float> embed_f32_;      // [V, D]
  LinearWeight lm_head_;         // untied only (never NF4: kept 16-bit as QLoRA does)
  Buffer<float> final_norm_;     // [D]
  std::vector<LayerWeights> layers_;
  std::map<std::string, std::unique_ptr<Adapter>> adapters_;
  std::vector<std::string> adapter_order_;
  std::atomic<bool> cancel_{false};
};

}  // namespace ls
