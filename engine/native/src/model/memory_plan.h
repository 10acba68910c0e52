// The memory plan: the bytes of every buffer the model allocates, per
// category (common/memory.h), computed from shapes alone, without weights.
//
// The layout functions below are the one source of truth for buffer sizes:
// the model (model.cpp) allocates its weights, adapters, saved activations
// and scratch with them, the kernels size their workspace with the functions
// of gemm.h and ops.h, and plan_training_step replays one training step's
// allocations and frees in the order Model::train_step and
// Model::optimizer_step make them, so its peaks are the tracked allocator's.
//
// Dimension legend (as in model.h): B batch, T tokens per sequence, N = B*T,
// D hidden, F intermediate, V vocab, L layers, H / KV heads, Hd head dim,
// r LoRA rank.
//
// The plan is of a steady-state step: gradients and AdamW moments exist from
// the start (the first step allocates them during its backward, so its peak is
// at most this one), every label is trained, positions restart per sequence,
// and every GEMM thread slot a product can use grows to that product's need
// (the most the dynamic schedule can make it; with one thread it is exact).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/memory.h"
#include "model/model.h"

namespace ls {

// ---- layouts shared with the model ------------------------------------------------

struct ProjShape {
  int64_t out = 0, in = 0;
};
ProjShape proj_shape(const ModelConfig& c, int p);  // W [out, in] of projection p
bool proj_has_bias(const ModelConfig& c, int p);

DType projection_dtype(BaseFormat f);  // F32, BF16 or NF4
DType embedding_dtype(BaseFormat f);   // F32 or BF16 (NF4 keeps embeddings 16-bit)

// Elements of each buffer of a frozen linear weight W [out, in] (bias apart).
struct LinearStorage {
  int64_t f32 = 0, bf16 = 0;                          // [out*in]
  int64_t nf4_packed = 0, nf4_absmax = 0, nf4_scale = 0;  // [n/2] u8, [n/64] u8, [ceil(n/64/256)] f32
  int64_t bytes() const;
};
LinearStorage linear_storage(int64_t out, int64_t in, DType dtype);

// Bytes of every base tensor: embeddings, untied output projection, norms,
// projections and biases.
int64_t base_weight_bytes(const ModelConfig& c, BaseFormat f);

// Elements of one layer's saved activations for N token rows (Model::LayerActs),
// LoRA hidden states apart ([N, r] per adapted projection, created on use).
struct LayerActsLayout {
  int64_t h1 = 0, rstd1 = 0;                        // [N,D], [N]
  int64_t q_raw = 0, k_raw = 0, rstd_q = 0, rstd_k = 0;  // Qwen3 q/k norm only
  int64_t q = 0, k = 0, v = 0, attn = 0, lse = 0;   // [N,H*Hd], [N,KV*Hd] x2, [N,H*Hd], [N*H]
  int64_t xm = 0, h2 = 0, rstd2 = 0;                // [N,D] x2, [N]
  int64_t g = 0, u = 0, act = 0;                    // [N,F] x3
  int64_t bytes() const;
};
LayerActsLayout layer_acts_layout(const ModelConfig& c, int64_t N);

// Elements of one forward/backward call's scratch (Model::Scratch).
struct StepScratchLayout {
  int64_t positions = 0;               // [N] int32
  int64_t tmp_d = 0;                   // [N,D]
  int64_t xdrop = 0, lora_du = 0;      // [N, max(D,F,H*Hd)], [N, max r] (any adapter)
  int64_t dh = 0, dact = 0, dg = 0, du = 0, dattn = 0, dq = 0, dk = 0, dv = 0, dq2 = 0, dk2 = 0;
  int64_t bytes() const;
};
StepScratchLayout step_scratch_layout(const ModelConfig& c, int64_t N, int64_t max_rank,
                                      bool backward);

// Token rows of logits computed at once: about 4M floats (16 MiB), at least 32.
int64_t loss_chunk_rows(int64_t N, int64_t V);

// ---- the plan of a training step ------------------------------------------------------

struct PlanAdapter {
  int64_t rank = 8;
  uint32_t target_mask = 0;  // bit p = projection p adapted
};

struct StepPlanInput {
  ModelConfig config;  // shapes only (inv_freq unused)
  BaseFormat format = BaseFormat::BF16;
  std::vector<PlanAdapter> adapters;  // all enabled and trainable
  int64_t batch = 1, seq = 1;
  bool checkpointing = true;
  bool packed = false;  // examples packed into rows (attention segments)
  int threads = 1;      // pool threads (GEMM and kernel scratch per thread)
};

enum class StepPhase : int { Forward = 0, Backward, Optimizer, Count };
constexpr int kStepPhaseCount = static_cast<int>(StepPhase::Count);
const char* step_phase_name(StepPhase p);

struct MemUsage {
  int64_t bytes[kMemCategoryCount] = {};
  int64_t total = 0;
};

struct MemoryPlan {
  MemUsage resident;  // held across steps: base, adapters, gradients, optimizer state
  // Per phase and for the whole step: bytes[c] is category c's peak,
  // total the peak of the sum (not the sum of the peaks).
  MemUsage phase_peak[kStepPhaseCount];
  MemUsage peak;
  MemUsage at_peak;  // every category at the moment the total peaks (sums to peak.total)
  StepPhase peak_phase = StepPhase::Forward;
  std::string peak_point;  // e.g. "layer 3 attention backward"
};

// trainStep (forward, loss, backward) then optimizerStep.
MemoryPlan plan_training_step(const StepPlanInput& in);

}  // namespace ls
