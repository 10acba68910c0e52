#include "memory_plan.h"

#include <algorithm>
#include <array>
#include <utility>

#include "kernels/gemm.h"
#include "kernels/nf4.h"
#include "kernels/ops.h"

namespace ls {

// ---- layouts ------------------------------------------------------------------------

ProjShape proj_shape(const ModelConfig& c, int p) {
  const int64_t qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
  switch (p) {
    case kQ: return {qd, c.hidden};
    case kK: case kV: return {kvd, c.hidden};
    case kO: return {c.hidden, qd};
    case kGate: case kUp: return {c.intermediate, c.hidden};
    default: return {c.hidden, c.intermediate};
  }
}

bool proj_has_bias(const ModelConfig& c, int p) {
  return (p <= kV && c.qkv_bias) || (p == kO && c.o_bias) || (p >= kGate && c.mlp_bias);
}

DType projection_dtype(BaseFormat f) {
  return f == BaseFormat::F32 ? DType::F32 : f == BaseFormat::BF16 ? DType::BF16 : DType::NF4;
}

DType embedding_dtype(BaseFormat f) { return f == BaseFormat::F32 ? DType::F32 : DType::BF16; }

int64_t LinearStorage::bytes() const {
  return f32 * 4 + bf16 * 2 + nf4_packed + nf4_absmax + nf4_scale * 4;
}

LinearStorage linear_storage(int64_t out, int64_t in, DType dtype) {
  LinearStorage s;
  const int64_t n = out * in;
  if (dtype == DType::F32) {
    s.f32 = n;
  } else if (dtype == DType::BF16) {
    s.bf16 = n;
  } else {
    const int64_t blocks = n / kNf4BlockSize;
    s.nf4_packed = n / 2;
    s.nf4_absmax = blocks;
    s.nf4_scale = (blocks + kNf4AbsmaxBlock - 1) / kNf4AbsmaxBlock;
  }
  return s;
}

int64_t base_weight_bytes(const ModelConfig& c, BaseFormat f) {
  const int64_t embed = linear_storage(c.vocab, c.hidden, embedding_dtype(f)).bytes();
  int64_t total = embed + (c.tied ? 0 : embed) + c.hidden * 4;  // + final norm
  for (int64_t l = 0; l < c.layers; ++l) {
    total += 2 * c.hidden * 4 + (c.qk_norm ? 2 * c.head_dim * 4 : 0);
    for (int p = 0; p < kProjCount; ++p) {
      const ProjShape s = proj_shape(c, p);
      total += linear_storage(s.out, s.in, projection_dtype(f)).bytes();
      if (proj_has_bias(c, p)) total += s.out * 4;
    }
  }
  return total;
}

int64_t LayerActsLayout::bytes() const {
  return 4 * (h1 + rstd1 + q_raw + k_raw + rstd_q + rstd_k + q + k + v + attn + lse + xm + h2 +
              rstd2 + g + u + act);
}

LayerActsLayout layer_acts_layout(const ModelConfig& c, int64_t N) {
  LayerActsLayout a;
  const int64_t qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
  a.h1 = N * c.hidden;
  a.rstd1 = N;
  if (c.qk_norm) {
    a.q_raw = N * qd;
    a.k_raw = N * kvd;
    a.rstd_q = N * c.heads;
    a.rstd_k = N * c.kv_heads;
  }
  a.q = N * qd;
  a.k = N * kvd;
  a.v = N * kvd;
  a.attn = N * qd;
  a.lse = N * c.heads;
  a.xm = N * c.hidden;
  a.h2 = N * c.hidden;
  a.rstd2 = N;
  a.g = a.u = a.act = N * c.intermediate;
  return a;
}

int64_t StepScratchLayout::bytes() const {
  return positions * 4 +
         4 * (tmp_d + xdrop + lora_du + dh + dact + dg + du + dattn + dq + dk + dv + dq2 + dk2);
}

StepScratchLayout step_scratch_layout(const ModelConfig& c, int64_t N, int64_t max_rank,
                                      bool backward) {
  StepScratchLayout s;
  const int64_t qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
  const int64_t widest = std::max({c.hidden, c.intermediate, qd});
  s.positions = N;
  s.tmp_d = N * c.hidden;
  if (max_rank > 0) {
    s.xdrop = N * widest;
    s.lora_du = N * max_rank;
  }
  if (backward) {
    s.dh = N * c.hidden;
    s.dact = s.dg = s.du = N * c.intermediate;
    s.dattn = s.dq = N * qd;
    s.dk = s.dv = N * kvd;
    if (c.qk_norm) {
      s.dq2 = N * qd;
      s.dk2 = N * kvd;
    }
  }
  return s;
}

int64_t loss_chunk_rows(int64_t N, int64_t V) {
  return std::min<int64_t>(N, std::max<int64_t>(32, (int64_t(4) << 20) / V));
}

const char* step_phase_name(StepPhase p) {
  switch (p) {
    case StepPhase::Forward: return "forward";
    case StepPhase::Backward: return "backward";
    default: return "optimizer";
  }
}

// ---- replay -------------------------------------------------------------------------

namespace {

constexpr MemCategory kAct = MemCategory::Activations;
constexpr MemCategory kWork = MemCategory::Workspace;

// Current and peak bytes per category as allocations and frees are replayed.
class Timeline {
 public:
  explicit Timeline(MemoryPlan& plan) : plan_(plan), now_(plan.resident) {
    plan_.peak = now_;
    plan_.at_peak = now_;
    enter(StepPhase::Forward);
  }
  void enter(StepPhase p) {
    phase_ = p;
    plan_.phase_peak[int(p)] = now_;
  }
  // Where the step is, for naming the point of the peak.
  void at(std::string what, int64_t layer = -1) {
    what_ = std::move(what);
    layer_ = layer;
  }
  void alloc(MemCategory c, int64_t bytes) {
    if (bytes <= 0) return;
    now_.bytes[int(c)] += bytes;
    now_.total += bytes;
    raise(plan_.phase_peak[int(phase_)], c);
    raise(plan_.peak, c);
    if (now_.total > best_total_) {
      best_total_ = now_.total;
      plan_.at_peak = now_;
      plan_.peak_phase = phase_;
      plan_.peak_point = layer_ >= 0 ? "layer " + std::to_string(layer_) + " " + what_ : what_;
    }
  }
  void release(MemCategory c, int64_t bytes) {
    if (bytes <= 0) return;
    now_.bytes[int(c)] -= bytes;
    now_.total -= bytes;
  }
  void transient(MemCategory c, int64_t bytes) {
    alloc(c, bytes);
    release(c, bytes);
  }

 private:
  void raise(MemUsage& peak, MemCategory c) {
    peak.bytes[int(c)] = std::max(peak.bytes[int(c)], now_.bytes[int(c)]);
    peak.total = std::max(peak.total, now_.total);
  }
  MemoryPlan& plan_;
  MemUsage now_;
  StepPhase phase_ = StepPhase::Forward;
  int64_t best_total_ = -1;
  std::string what_ = "start";
  int64_t layer_ = -1;
};

// The GEMM scratch of the calling thread (gemm.h): per thread slot a, b,
// tile, and one shared packed A, each grown (freed, then allocated larger)
// by the products and released when the call ends.
class GemmSlots {
 public:
  GemmSlots(Timeline& t, int threads) : t_(t), slots_(size_t(std::max(1, threads))) {}
  void run(const GemmScratch& s) {
    grow(shared_a_, s.shared_a);
    for (int i = 0; i < s.threads && i < int(slots_.size()); ++i) {
      grow(slots_[size_t(i)][0], s.a);
      grow(slots_[size_t(i)][1], s.b);
      grow(slots_[size_t(i)][2], s.tile);
    }
  }
  void release_all() {
    t_.release(kWork, shared_a_ * 4);
    shared_a_ = 0;
    for (auto& slot : slots_)
      for (int64_t& floats : slot) {
        t_.release(kWork, floats * 4);
        floats = 0;
      }
  }

 private:
  void grow(int64_t& have, int64_t want) {
    if (want <= have) return;
    t_.release(kWork, have * 4);
    t_.alloc(kWork, want * 4);
    have = want;
  }
  Timeline& t_;
  std::vector<std::array<int64_t, 3>> slots_;
  int64_t shared_a_ = 0;
};

// One training step of Model::run (backward = true) and the optimizer step.
class StepReplay {
 public:
  StepReplay(const StepPlanInput& in, MemoryPlan& plan)
      : in_(in), c_(in.config), N_(in.batch * in.seq), t_(plan), gemm_(t_, in.threads) {}

  void train_step() {
    const ModelConfig& c = c_;
    const int64_t L = c.layers, D = c.hidden;
    const bool per_layer = !in_.checkpointing;
    int64_t max_rank = 0;
    for (const PlanAdapter& a : in_.adapters) max_rank = std::max(max_rank, a.rank);
    t_.at("step scratch");
    const int64_t scratch = step_scratch_layout(c, N_, max_rank, true).bytes();
    t_.alloc(kWork, scratch);
    t_.at("layer inputs");
    const int64_t xs = (L + 1) * N_ * D * 4;
    t_.alloc(kAct, xs);
    const int64_t act_sets = per_layer ? L : 1;
    const int64_t acts = act_sets * layer_acts_layout(c, N_).bytes();
    t_.alloc(kAct, acts);
    lora_hidden_.assign(size_t(act_sets), std::vector<bool>(in_.adapters.size() * kProjCount));
    for (int64_t l = 0; l < L; ++l) layer_forward(l, per_layer ? l : 0, "forward");

    // Final norm, then the loss a chunk of logits rows at a time.
    t_.at("final norm");
    const int64_t hf = N_ * D * 4, rstdf = N_ * 4, targets = N_ * 4;
    t_.alloc(kAct, hf + rstdf);
    t_.alloc(kWork, targets);
    const int64_t chunk = loss_chunk_rows(N_, c.vocab);
    t_.at("loss");
    const int64_t logits = chunk * c.vocab * 4, dhf = N_ * D * 4;
    t_.alloc(kWork, logits);
    t_.alloc(kWork, dhf);
    const DType head = embedding_dtype(in_.format);
    for (int64_t r0 = 0; r0 < N_; r0 += chunk) {
      const int64_t rows = std::min(chunk, N_ - r0);
      // Middle chunks repeat the first; a chunk of only sequence ends is skipped.
      if (r0 > 0 && r0 + chunk < N_) continue;
      const bool trained = in_.seq > 1 && (rows > 1 || r0 % in_.seq != in_.seq - 1);
      if (!trained) continue;
      t_.at("loss: output projection");
      gemm_.run(linear_forward_scratch(head, c.vocab, D, rows, in_.threads));
      t_.at("loss: cross-entropy");
      t_.transient(kWork, cross_entropy_workspace_bytes(rows));
      t_.at("loss: output projection backward");
      gemm_.run(linear_backward_input_scratch(head, c.vocab, D, rows, in_.threads));
    }
    t_.release(kWork, logits);

    t_.enter(StepPhase::Backward);
    t_.at("final norm backward");
    const int64_t dx = N_ * D * 4;
    t_.alloc(kWork, dx);
    t_.release(kWork, dhf);
    t_.release(kAct, hf);
    for (int64_t l = L - 1; l >= 0; --l) {
      const int64_t set = per_layer ? l : 0;
      if (!per_layer) layer_forward(l, set, "recompute");
      layer_backward(l);
    }
    // The step's buffers go out of scope, then the call's GEMM scratch.
    t_.at("end of step");
    t_.release(kWork, dx + targets + scratch);
    t_.release(kAct, rstdf + acts + xs + lora_bytes_);
    gemm_.release_all();
  }

  void optimizer_step() {
    t_.enter(StepPhase::Optimizer);
    t_.at("optimizer: gradient norm");
    for (const PlanAdapter& a : in_.adapters)
      for (int p = 0; p < kProjCount; ++p) {
        if (!(a.target_mask & (1u << p))) continue;
        const ProjShape s = proj_shape(c_, p);
        t_.transient(kWork, sum_squares_workspace_bytes(a.rank * s.in));
        t_.transient(kWork, sum_squares_workspace_bytes(s.out * a.rank));
      }
  }

 private:
  // Model::linear: the frozen product, then each adapter's two.
  void linear(int64_t l, int p, int64_t set) {
    const ProjShape s = proj_shape(c_, p);
    gemm_.run(linear_forward_scratch(projection_dtype(in_.format), s.out, s.in, N_, in_.threads));
    for (size_t i = 0; i < in_.adapters.size(); ++i) {
      const PlanAdapter& a = in_.adapters[i];
      if (!(a.target_mask & (1u << p))) continue;
      std::vector<bool>& created = lora_hidden_[size_t(set)];
      if (!created[i * kProjCount + size_t(p)]) {  // LayerActs::lora_hidden creates it on first use
        created[i * kProjCount + size_t(p)] = true;
        t_.alloc(kAct, N_ * a.rank * 4);
        lora_bytes_ += N_ * a.rank * 4;
      }
      gemm_.run(sgemm_scratch(false, true, N_, a.rank, s.in, 1.f, in_.threads));
      gemm_.run(sgemm_scratch(false, true, N_, s.out, a.rank, 1.f, in_.threads));
    }
  }

  // Model::linear_backward: dX through the frozen weight, then per adapter
  // du, gB, gA and its dX.
  void linear_backward(int p) {
    const ProjShape s = proj_shape(c_, p);
    gemm_.run(linear_backward_input_scratch(projection_dtype(in_.format), s.out, s.in, N_,
                                            in_.threads));
    for (const PlanAdapter& a : in_.adapters) {
      if (!(a.target_mask & (1u << p))) continue;
      const int64_t r = a.rank;
      gemm_.run(sgemm_scratch(false, false, N_, r, s.out, 1.f, in_.threads));
      gemm_.run(sgemm_scratch(true, false, s.out, r, N_, 1.f, in_.threads));
      gemm_.run(sgemm_scratch(true, false, r, s.in, N_, 1.f, in_.threads));
      gemm_.run(sgemm_scratch(false, false, N_, s.in, r, 1.f, in_.threads));
    }
  }

  AttentionShape attention_shape() const {
    AttentionShape sh;
    sh.batch = in_.batch;
    sh.q_len = sh.kv_len = in_.seq;
    sh.heads = c_.heads;
    sh.kv_heads = c_.kv_heads;
    sh.head_dim = c_.head_dim;
    return sh;
  }

  // Model::layer_forward (training rows, no KV cache).
  void layer_forward(int64_t l, int64_t set, const char* what) {
    const int64_t span = in_.seq;  // positions restart per sequence
    t_.at(std::string(what) + " q/k/v", l);
    linear(l, kQ, set);
    linear(l, kK, set);
    linear(l, kV, set);
    t_.transient(kWork, rope_workspace_bytes(N_, span, c_.head_dim, in_.threads));
    t_.transient(kWork, rope_workspace_bytes(N_, span, c_.head_dim, in_.threads));
    t_.at(std::string(what) + " attention", l);
    t_.transient(kWork, attention_forward_workspace_bytes(attention_shape(), in_.packed, in_.threads));
    t_.at(std::string(what) + " o/mlp", l);
    linear(l, kO, set);
    linear(l, kGate, set);
    linear(l, kUp, set);
    linear(l, kDown, set);
  }

  // Model::layer_backward.
  void layer_backward(int64_t l) {
    t_.at("mlp backward", l);
    linear_backward(kDown);
    linear_backward(kGate);
    linear_backward(kUp);
    t_.at("attention backward", l);
    linear_backward(kO);
    t_.transient(kWork, attention_backward_workspace_bytes(attention_shape(), in_.packed, in_.threads));
    t_.transient(kWork, rope_workspace_bytes(N_, in_.seq, c_.head_dim, in_.threads));
    t_.transient(kWork, rope_workspace_bytes(N_, in_.seq, c_.head_dim, in_.threads));
    t_.at("q/k/v backward", l);
    linear_backward(kQ);
    linear_backward(kK);
    linear_backward(kV);
  }

  const StepPlanInput& in_;
  const ModelConfig& c_;
  const int64_t N_;
  Timeline t_;
  GemmSlots gemm_;
  std::vector<std::vector<bool>> lora_hidden_;  // [act set][adapter * kProjCount + p] created
  int64_t lora_bytes_ = 0;
};

}  // namespace

MemoryPlan plan_training_step(const StepPlanInput& in) {
  MemoryPlan plan;
  const ModelConfig& c = in.config;
  int64_t adapter_floats = 0;
  for (const PlanAdapter& a : in.adapters)
    for (int p = 0; p < kProjCount; ++p)
      if (a.target_mask & (1u << p)) {
        const ProjShape s = proj_shape(c, p);
        adapter_floats += c.layers * (a.rank * s.in + s.out * a.rank);  // A [r,in], B [out,r]
      }
  MemUsage& r = plan.resident;
  r.bytes[int(MemCategory::Base)] = base_weight_bytes(c, in.format);
  r.bytes[int(MemCategory::Adapters)] = adapter_floats * 4;
  r.bytes[int(MemCategory::Gradients)] = adapter_floats * 4;      // gA, gB
  r.bytes[int(MemCategory::Optimizer)] = 2 * adapter_floats * 4;  // m, v of each
  for (int i = 0; i < kMemCategoryCount; ++i) r.total += r.bytes[i];
  StepReplay replay(in, plan);
  replay.train_step();
  replay.optimizer_step();
  return plan;
}

}  // namespace ls
