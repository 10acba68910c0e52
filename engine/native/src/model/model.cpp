#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "common/threads.h"
#include "kernels/nf4.h"
#include "kernels/ops.h"
#include "model/memory_plan.h"

namespace ls {

const char* proj_name(int p) {
  static const char* names[kProjCount] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                          "gate_proj", "up_proj", "down_proj"};
  return (p >= 0 && p < kProjCount) ? names[p] : "?";
}

namespace {

// ---- small helpers ------------------------------------------------------------

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
uint64_t mix(uint64_t a, uint64_t b) { return splitmix64(a ^ splitmix64(b)); }

// Frees the calling thread's GEMM scratch when a call ends (see gemm.h), so
// each call's scratch is counted during that call only.
struct GemmScratchScope {
  ~GemmScratchScope() { gemm_release_scratch(); }
};

// Uniform in [0, 1) from a 64-bit hash (24 bits of mantissa).
float unit_float(uint64_t h) { return float(h >> 40) * (1.0f / 16777216.0f); }

// Source of fp32 values for elements [begin, end) of a tensor.
using ElementSource = std::function<void(int64_t begin, int64_t end, float* dst)>;

ElementSource raw_source(DType src, const void* data) {
  return [src, data](int64_t begin, int64_t end, float* dst) {
    int64_t n = end - begin;
    switch (src) {
      case DType::F32:
        std::memcpy(dst, static_cast<const float*>(data) + begin, size_t(n) * 4);
        break;
      case DType::BF16: {
        const uint16_t* p = static_cast<const uint16_t*>(data) + begin;
        for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(p[i]);
        break;
      }
      case DType::F16: {
        const uint16_t* p = static_cast<const uint16_t*>(data) + begin;
        for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(p[i]);
        break;
      }
      default:
        throw std::runtime_error("unsupported source dtype");
    }
  };
}

// Random weights for benchmarks: uniform in ±√3·std (standard deviation
// `std`), element i of stream `seed`, cheap enough to fill an 8B model fast.
ElementSource random_source(uint64_t seed, float std) {
  const float half_width = 1.7320508f * std;
  return [seed, half_width](int64_t begin, int64_t end, float* dst) {
    for (int64_t i = begin; i < end; ++i)
      dst[i - begin] = (2.0f * unit_float(mix(seed, uint64_t(i))) - 1.0f) * half_width;
  };
}

constexpr int64_t kConvertChunk = 64 * 1024;  // elements per conversion task

void fill_f32(float* dst, int64_t n, const ElementSource& src) {
  parallel_for((n + kConvertChunk - 1) / kConvertChunk, 1, [&](int64_t c0, int64_t c1, int) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t b = c * kConvertChunk, e = std::min(n, b + kConvertChunk);
      src(b, e, dst + b);
    }
  });
}

void fill_bf16(uint16_t* dst, int64_t n, const ElementSource& src) {
  parallel_for((n + kConvertChunk - 1) / kConvertChunk, 1, [&](int64_t c0, int64_t c1, int) {
    Buffer<float> tmp(MemCategory::Workspace, static_cast<size_t>(kConvertChunk));
    for (int64_t c = c0; c < c1; ++c) {
      int64_t b = c * kConvertChunk, e = std::min(n, b + kConvertChunk);
      src(b, e, tmp.data());
      for (int64_t i = b; i < e; ++i) dst[i] = f32_to_bf16(tmp[size_t(i - b)]);
    }
  });
}

void add_rows(float* y, const float* bias, int64_t rows, int64_t cols) {
  parallel_for(rows, 16, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      float* yr = y + r * cols;
      for (int64_t c = 0; c < cols; ++c) yr[c] += bias[c];
    }
  });
}

void add_into(float* y, const float* x, int64_t n) {
  parallel_for(n, 4096, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) y[i] += x[i];
  });
}

// out = x ⊙ mask / keep, mask from the counter-based hash (LoRA dropout).
void apply_dropout(const float* x, float* out, int64_t n, float p, uint64_t seed) {
  const float keep_scale = 1.0f / (1.0f - p);
  parallel_for(n, 4096, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i)
      out[i] = unit_float(mix(seed, uint64_t(i))) >= p ? x[i] * keep_scale : 0.0f;
  });
}

}  // namespace

// ---- LinearWeight ---------------------------------------------------------------

WeightRef LinearWeight::ref() const {
  WeightRef r;
  r.dtype = dtype;
  r.out = out;
  r.in = in;
  r.f32 = f32.data();
  r.bf16 = bf16.data();
  r.nf4.rows = out;
  r.nf4.cols = in;
  r.nf4.packed = nf4_packed.data();
  r.nf4.absmax_q = nf4_absmax.data();
  r.nf4.absmax_scale = nf4_scale.data();
  r.nf4.absmax_mean = nf4_mean;
  return r;
}

int64_t LinearWeight::bytes() const {
  return int64_t(f32.bytes() + bf16.bytes() + nf4_packed.bytes() + nf4_absmax.bytes() +
                 nf4_scale.bytes() + bias.bytes());
}

namespace {

void build_linear(LinearWeight& w, int64_t out, int64_t in, DType target,
                  const ElementSource& src) {
  w.out = out;
  w.in = in;
  w.dtype = target;
  const int64_t n = out * in;
  const LinearStorage st = linear_storage(out, in, target);
  if (target == DType::F32) {
    w.f32 = Buffer<float>(MemCategory::Base, size_t(st.f32));
    fill_f32(w.f32.data(), n, src);
  } else if (target == DType::BF16) {
    w.bf16 = Buffer<uint16_t>(MemCategory::Base, size_t(st.bf16));
    fill_bf16(w.bf16.data(), n, src);
  } else {  // NF4: quantize chunk by chunk, never holding the fp32 tensor
    if (n % kNf4BlockSize) throw std::runtime_error("NF4 needs a multiple of 64 weights");
    const int64_t nblocks = st.nf4_absmax;
    w.nf4_packed = Buffer<uint8_t>(MemCategory::Base, size_t(st.nf4_packed));
    w.nf4_absmax = Buffer<uint8_t>(MemCategory::Base, size_t(st.nf4_absmax));
    w.nf4_scale = Buffer<float>(MemCategory::Base, size_t(st.nf4_scale));
    Buffer<float> absmax(MemCategory::Workspace, size_t(nblocks));
    parallel_for((n + kConvertChunk - 1) / kConvertChunk, 1, [&](int64_t c0, int64_t c1, int) {
      Buffer<float> tmp(MemCategory::Workspace, size_t(kConvertChunk));
      for (int64_t c = c0; c < c1; ++c) {
        int64_t b = c * kConvertChunk, e = std::min(n, b + kConvertChunk);
        src(b, e, tmp.data());
        nf4_quantize_blocks(tmp.data(), e - b, w.nf4_packed.data() + b / 2,
                            absmax.data() + b / kNf4BlockSize);
      }
    });
    nf4_double_quantize(absmax.data(), nblocks, w.nf4_absmax.data(), w.nf4_scale.data(),
                        &w.nf4_mean);
  }
}

Buffer<float> build_vector(int64_t n, const ElementSource& src) {
  Buffer<float> v(MemCategory::Base, size_t(n));
  fill_f32(v.data(), n, src);
  return v;
}

}  // namespace

// ---- Model: construction and weights ---------------------------------------------

Model::Model(const ModelConfig& cfg, BaseFormat format) : cfg_(cfg), format_(format) {
  embed_dtype_ = embedding_dtype(format);
  layers_.resize(size_t(cfg.layers));
}

Model::~Model() = default;

void Model::set_embedding(DType src, const void* data) {
  const int64_t n = cfg_.vocab * cfg_.hidden;
  auto source = raw_source(src, data);
  if (embed_dtype_ == DType::F32) {
    embed_f32_ = Buffer<float>(MemCategory::Base, size_t(n));
    fill_f32(embed_f32_.data(), n, source);
  } else {
    embed_bf16_ = Buffer<uint16_t>(MemCategory::Base, size_t(n));
    fill_bf16(embed_bf16_.data(), n, source);
  }
}

void Model::set_lm_head(DType src, const void* data) {
  // The output projection stays 16-bit even for QLoRA (as the QLoRA recipe does).
  build_linear(lm_head_, cfg_.vocab, cfg_.hidden, embed_dtype_, raw_source(src, data));
}

void Model::set_final_norm(DType src, const void* data) {
  final_norm_ = build_vector(cfg_.hidden, raw_source(src, data));
}

void Model::set_norm(int64_t layer, int which, DType src, const void* data) {
  LayerWeights& L = layers_.at(size_t(layer));
  int64_t n = which < 2 ? cfg_.hidden : cfg_.head_dim;
  Buffer<float> v = build_vector(n, raw_source(src, data));
  switch (which) {
    case 0: L.input_norm = std::move(v); break;
    case 1: L.post_norm = std::move(v); break;
    case 2: L.q_norm = std::move(v); break;
    default: L.k_norm = std::move(v); break;
  }
}

void Model::set_projection(int64_t layer, int proj, DType src, const void* data) {
  const ProjShape s = proj_shape(cfg_, proj);
  LinearWeight& w = layers_.at(size_t(layer)).proj[size_t(proj)];
  Buffer<float> bias = std::move(w.bias);
  build_linear(w, s.out, s.in, projection_dtype(format_), raw_source(src, data));
  w.bias = std::move(bias);
}

void Model::set_bias(int64_t layer, int proj, DType src, const void* data) {
  const ProjShape s = proj_shape(cfg_, proj);
  layers_.at(size_t(layer)).proj[size_t(proj)].bias = build_vector(s.out, raw_source(src, data));
}

void Model::init_random(uint64_t seed, float std) {
  const DType target = projection_dtype(format_);
  uint64_t stream = seed * 1000003ull;
  auto next = [&]() { return mix(seed, ++stream); };
  const int64_t nE = cfg_.vocab * cfg_.hidden;
  auto es = random_source(next(), std);
  if (embed_dtype_ == DType::F32) {
    embed_f32_ = Buffer<float>(MemCategory::Base, size_t(nE));
    fill_f32(embed_f32_.data(), nE, es);
  } else {
    embed_bf16_ = Buffer<uint16_t>(MemCategory::Base, size_t(nE));
    fill_bf16(embed_bf16_.data(), nE, es);
  }
  if (!cfg_.tied) build_linear(lm_head_, cfg_.vocab, cfg_.hidden, embed_dtype_, random_source(next(), std));
  auto ones = [](int64_t b, int64_t e, float* d) { std::fill(d, d + (e - b), 1.0f); };
  final_norm_ = build_vector(cfg_.hidden, ones);
  for (int64_t l = 0; l < cfg_.layers; ++l) {
    LayerWeights& L = layers_[size_t(l)];
    L.input_norm = build_vector(cfg_.hidden, ones);
    L.post_norm = build_vector(cfg_.hidden, ones);
    if (cfg_.qk_norm) {
      L.q_norm = build_vector(cfg_.head_dim, ones);
      L.k_norm = build_vector(cfg_.head_dim, ones);
    }
    for (int p = 0; p < kProjCount; ++p) {
      const ProjShape s = proj_shape(cfg_, p);
      build_linear(L.proj[size_t(p)], s.out, s.in, target, random_source(next(), std));
      if (proj_has_bias(cfg_, p)) L.proj[size_t(p)].bias = build_vector(s.out, random_source(next(), std));
    }
    check_cancel();
  }
}

int64_t Model::base_bytes() const {
  int64_t total = int64_t(embed_bf16_.bytes() + embed_f32_.bytes() + final_norm_.bytes()) +
                  lm_head_.bytes();
  for (const auto& L : layers_) {
    total += int64_t(L.input_norm.bytes() + L.post_norm.bytes() + L.q_norm.bytes() +
                     L.k_norm.bytes());
    for (const auto& w : L.proj) total += w.bytes();
  }
  return total;
}

WeightRef Model::lm_head_ref() const {
  if (!cfg_.tied) return lm_head_.ref();
  WeightRef r;
  r.dtype = embed_dtype_;
  r.out = cfg_.vocab;
  r.in = cfg_.hidden;
  r.f32 = embed_f32_.data();
  r.bf16 = embed_bf16_.data();
  return r;
}

// ---- adapters -----------------------------------------------------------------------

void Model::add_adapter(const AdapterSpec& spec) {
  if (adapters_.count(spec.name)) throw StateError("an adapter named '" + spec.name + "' already exists");
  auto a = std::make_unique<Adapter>();
  a->spec = spec;
  a->scale = spec.rslora ? float(double(spec.alpha) / std::sqrt(double(spec.rank)))
                         : float(double(spec.alpha) / double(spec.rank));
  a->layers.resize(size_t(cfg_.layers));
  const int64_t r = spec.rank;
  for (int64_t l = 0; l < cfg_.layers; ++l) {
    for (int p = 0; p < kProjCount; ++p) {
      if (!(spec.target_mask & (1u << p))) continue;
      auto m = std::make_unique<LoraModule>();
      const ProjShape shape = proj_shape(cfg_, p);
      m->out = shape.out;
      m->in = shape.in;
      // PEFT initialisation: A ~ U(-1/sqrt(in), 1/sqrt(in)) (Kaiming-uniform,
      // a = sqrt(5)), B = 0, so a fresh adapter leaves the output unchanged.
      m->A = Buffer<float>(MemCategory::Adapters, size_t(r * m->in));
      m->B = Buffer<float>(MemCategory::Adapters, size_t(m->out * r));
      const float bound = float(1.0 / std::sqrt(double(m->in)));
      const uint64_t seed = mix(mix(spec.seed, uint64_t(l)), uint64_t(p));
      for (int64_t i = 0; i < r * m->in; ++i)
        m->A[size_t(i)] = (2.0f * unit_float(mix(seed, uint64_t(i))) - 1.0f) * bound;
      std::fill(m->B.data(), m->B.data() + m->B.size(), 0.0f);
      a->layers[size_t(l)][size_t(p)] = std::move(m);
    }
  }
  adapter_order_.push_back(spec.name);
  adapters_[spec.name] = std::move(a);
}

void Model::remove_adapter(const std::string& name) {
  Adapter& a = adapter(name);
  if (a.merged) unmerge_adapter(name);
  adapters_.erase(name);
  adapter_order_.erase(std::find(adapter_order_.begin(), adapter_order_.end(), name));
}

Adapter& Model::adapter(const std::string& name) {
  auto it = adapters_.find(name);
  if (it == adapters_.end()) throw StateError("no adapter named '" + name + "'");
  return *it->second;
}

std::vector<std::string> Model::adapter_names() const { return adapter_order_; }

void Model::set_adapter_enabled(const std::string& name, bool enabled) {
  adapter(name).enabled = enabled;
}

void Model::set_adapter_trainable(const std::string& name, bool trainable) {
  adapter(name).trainable = trainable;
}

namespace {
void ensure_training_state(LoraModule& m, int64_t r) {
  auto zeros = [](Buffer<float>& b, MemCategory cat, size_t n) {
    if (b.empty()) {
      b = Buffer<float>(cat, n);
      std::fill(b.data(), b.data() + n, 0.0f);
    }
  };
  zeros(m.gA, MemCategory::Gradients, size_t(r * m.in));
  zeros(m.gB, MemCategory::Gradients, size_t(m.out * r));
  zeros(m.mA, MemCategory::Optimizer, size_t(r * m.in));
  zeros(m.vA, MemCategory::Optimizer, size_t(r * m.in));
  zeros(m.mB, MemCategory::Optimizer, size_t(m.out * r));
  zeros(m.vB, MemCategory::Optimizer, size_t(m.out * r));
}
}  // namespace

Buffer<float>& Model::adapter_tensor(const std::string& name, int64_t layer, int proj, int which) {
  Adapter& a = adapter(name);
  if (layer < 0 || layer >= cfg_.layers || proj < 0 || proj >= kProjCount)
    throw StateError("adapter tensor index out of range");
  LoraModule* m = a.layers[size_t(layer)][size_t(proj)].get();
  if (!m) throw StateError("adapter '" + name + "' does not adapt " + proj_name(proj));
  if (which >= 2) ensure_training_state(*m, a.spec.rank);
  switch (which) {
    case 0: return m->A;
    case 1: return m->B;
    case 2: return m->gA;
    case 3: return m->gB;
    case 4: return m->mA;
    case 5: return m->vA;
    case 6: return m->mB;
    default: return m->vB;
  }
}

// W += sign · scale · B·A for every adapted projection, in the base's own
// precision (bf16 rounds once per merge; unmerge subtracts the same delta).
void Model::add_adapter_delta(Adapter& a, float sign) {
  GemmScratchScope scratch;
  const int64_t r = a.spec.rank;
  for (int64_t l = 0; l < cfg_.layers; ++l) {
    for (int p = 0; p < kProjCount; ++p) {
      LoraModule* m = a.layers[size_t(l)][size_t(p)].get();
      if (!m) continue;
      LinearWeight& w = layers_[size_t(l)].proj[size_t(p)];
      Buffer<float> delta(MemCategory::Workspace, size_t(m->out * m->in));
      sgemm(false, false, m->out, m->in, r, sign * a.scale, m->B.data(), r, m->A.data(), m->in, 0.0f,
            delta.data(), m->in);
      const int64_t n = m->out * m->in;
      if (w.dtype == DType::F32) {
        add_into(w.f32.data(), delta.data(), n);
      } else {
        uint16_t* d = w.bf16.data();
        parallel_for(n, 4096, [&](int64_t b, int64_t e, int) {
          for (int64_t i = b; i < e; ++i) d[i] = f32_to_bf16(bf16_to_f32(d[i]) + delta[size_t(i)]);
        });
      }
    }
  }
}

void Model::merge_adapter(const std::string& name) {
  Adapter& a = adapter(name);
  if (a.merged) return;
  if (format_ == BaseFormat::NF4)
    throw StateError("merging needs a 16-bit base: load the model with method 'lora' (bf16) to merge; "
                     "a 4-bit base would round the adapter away");
  add_adapter_delta(a, 1.0f);
  a.merged = true;
}

void Model::unmerge_adapter(const std::string& name) {
  Adapter& a = adapter(name);
  if (!a.merged) return;
  add_adapter_delta(a, -1.0f);
  a.merged = false;
}

std::vector<Adapter*> Model::active_adapters(int64_t l, int p) {
  std::vector<Adapter*> out;
  for (const auto& name : adapter_order_) {
    Adapter* a = adapters_[name].get();
    if (a->enabled && !a->merged && a->layers[size_t(l)][size_t(p)]) out.push_back(a);
  }
  return out;
}

// ---- activations and scratch ------------------------------------------------------

// Everything one layer's backward needs, for N token rows.
struct Model::LayerActs {
  int64_t N = 0;
  bool training = false;         // LoRA dropout on
  const float* x_in = nullptr;   // [N,D] layer input (owned by the caller)
  Buffer<float> h1, rstd1;       // [N,D], [N]
  Buffer<float> q_raw, k_raw;    // [N,H*Hd], [N,KV*Hd] before q/k norm (Qwen3 only)
  Buffer<float> rstd_q, rstd_k;  // [N*H], [N*KV]                      (Qwen3 only)
  Buffer<float> q, k, v;         // after norm and RoPE: [N,H*Hd], [N,KV*Hd] x2
  Buffer<float> attn, lse;       // [N,H*Hd], [B*H*T]
  Buffer<float> xm, h2, rstd2;   // [N,D], [N,D], [N]
  Buffer<float> g, u, act;       // [N,F] x3
  // LoRA hidden u = drop(x)·Aᵀ [N,r], one per (adapter, projection).
  std::map<std::pair<const Adapter*, int>, Buffer<float>> lora;

  // Sizes from layer_acts_layout (memory_plan.h); empty buffers are not allocated.
  LayerActs(const ModelConfig& c, int64_t n) : N(n) {
    const LayerActsLayout s = layer_acts_layout(c, n);
    auto make = [](int64_t count) { return Buffer<float>(MemCategory::Activations, size_t(count)); };
    h1 = make(s.h1);
    rstd1 = make(s.rstd1);
    q_raw = make(s.q_raw);
    k_raw = make(s.k_raw);
    rstd_q = make(s.rstd_q);
    rstd_k = make(s.rstd_k);
    q = make(s.q);
    k = make(s.k);
    v = make(s.v);
    attn = make(s.attn);
    lse = make(s.lse);
    xm = make(s.xm);
    h2 = make(s.h2);
    rstd2 = make(s.rstd2);
    g = make(s.g);
    u = make(s.u);
    act = make(s.act);
  }

  float* lora_hidden(const Adapter* a, int p) {
    auto key = std::make_pair(a, p);
    auto it = lora.find(key);
    if (it == lora.end())
      it = lora.emplace(key, Buffer<float>(MemCategory::Activations, size_t(N * a->spec.rank))).first;
    return it->second.data();
  }
};

// Transient buffers of one forward/backward call (Workspace).
struct Model::Scratch {
  Buffer<int32_t> positions;  // [N]
  Buffer<float> tmp_d;        // [N,D]
  Buffer<float> xdrop;        // [N, max in/out] dropout input / LoRA dx
  Buffer<float> lora_du;      // [N, max r]
  // backward only
  Buffer<float> dh, dact, dg, du, dattn, dq, dk, dv, dq2, dk2;

  // Sizes from step_scratch_layout (memory_plan.h); empty buffers are not allocated.
  Scratch(const ModelConfig& c, int64_t N, int64_t max_rank, bool backward) {
    const StepScratchLayout s = step_scratch_layout(c, N, max_rank, backward);
    auto make = [](int64_t count) { return Buffer<float>(MemCategory::Workspace, size_t(count)); };
    positions = Buffer<int32_t>(MemCategory::Workspace, size_t(s.positions));
    tmp_d = make(s.tmp_d);
    xdrop = make(s.xdrop);
    lora_du = make(s.lora_du);
    dh = make(s.dh);
    dact = make(s.dact);
    dg = make(s.dg);
    du = make(s.du);
    dattn = make(s.dattn);
    dq = make(s.dq);
    dk = make(s.dk);
    dv = make(s.dv);
    dq2 = make(s.dq2);
    dk2 = make(s.dk2);
  }
};

namespace {
uint64_t dropout_stream(uint64_t seed, int64_t layer, int proj, const Adapter* a) {
  uint64_t name_hash = 1469598103934665603ull;
  for (char ch : a->spec.name) name_hash = (name_hash ^ uint8_t(ch)) * 1099511628211ull;
  return mix(mix(mix(seed, uint64_t(layer)), uint64_t(proj)), name_hash);
}
}  // namespace

// ---- linear layers with LoRA ---------------------------------------------------------

void Model::linear(int64_t l, int p, const float* x, int64_t N, float* y, LayerActs* acts,
                   uint64_t dropout_seed, Scratch& s) {
  const LinearWeight& w = layers_[size_t(l)].proj[size_t(p)];
  linear_forward(w.ref(), x, N, y, false);
  if (!w.bias.empty()) add_rows(y, w.bias.data(), N, w.out);
  for (Adapter* a : active_adapters(l, p)) {
    LoraModule& m = *a->layers[size_t(l)][size_t(p)];
    const int64_t r = a->spec.rank;
    const float* xin = x;
    if (acts && acts->training && a->spec.dropout > 0.f) {
      apply_dropout(x, s.xdrop.data(), N * m.in, a->spec.dropout,
                    dropout_stream(dropout_seed, l, p, a));
      xin = s.xdrop.data();
    }
    float* hidden = acts ? acts->lora_hidden(a, p) : s.lora_du.data();
    sgemm(false, true, N, r, m.in, 1.0f, xin, m.in, m.A.data(), m.in, 0.0f, hidden, r);
    sgemm(false, true, N, m.out, r, a->scale, hidden, r, m.B.data(), r, 1.0f, y, m.out);
  }
}

void Model::linear_backward(int64_t l, int p, const float* x, const float* dy, int64_t N,
                            float* dx, bool accumulate, LayerActs& acts, uint64_t dropout_seed,
                            Scratch& s) {
  const LinearWeight& w = layers_[size_t(l)].proj[size_t(p)];
  linear_backward_input(w.ref(), dy, N, dx, accumulate);
  for (Adapter* a : active_adapters(l, p)) {
    LoraModule& m = *a->layers[size_t(l)][size_t(p)];
    const int64_t r = a->spec.rank;
    const float* hidden = acts.lora_hidden(a, p);
    float* du = s.lora_du.data();  // [N,r] = scale · dy·B
    sgemm(false, false, N, r, m.out, a->scale, dy, m.out, m.B.data(), r, 0.0f, du, r);
    const bool dropout = acts.training && a->spec.dropout > 0.f;
    const uint64_t stream = dropout_stream(dropout_seed, l, p, a);
    if (a->trainable) {
      ensure_training_state(m, r);
      // gB[out,r] += scale · dyᵀ·hidden ;  gA[r,in] += duᵀ·drop(x)
      sgemm(true, false, m.out, r, N, a->scale, dy, m.out, hidden, r, 1.0f, m.gB.data(), r);
      const float* xin = x;
      if (dropout) {
        apply_dropout(x, s.xdrop.data(), N * m.in, a->spec.dropout, stream);
        xin = s.xdrop.data();
      }
      sgemm(true, false, r, m.in, N, 1.0f, du, r, xin, m.in, 1.0f, m.gA.data(), m.in);
    }
    if (!dropout) {
      sgemm(false, false, N, m.in, r, 1.0f, du, r, m.A.data(), m.in, 1.0f, dx, m.in);
    } else {
      float* t = s.xdrop.data();
      sgemm(false, false, N, m.in, r, 1.0f, du, r, m.A.data(), m.in, 0.0f, t, m.in);
      apply_dropout(t, t, N * m.in, a->spec.dropout, stream);
      add_into(dx, t, N * m.in);
    }
  }
}

// ---- one layer ------------------------------------------------------------------------

void Model::layer_forward(int64_t l, const float* x, float* out, LayerActs& a,
                          const TrainBatch* b, KvCache* cache, Scratch& s) {
  const ModelConfig& c = cfg_;
  const LayerWeights& L = layers_[size_t(l)];
  const int64_t N = a.N, D = c.hidden, H = c.heads, KV = c.kv_heads, Hd = c.head_dim;
  const int64_t qd = H * Hd, kvd = KV * Hd;
  const uint64_t dseed = b ? b->dropout_seed : 0;
  a.x_in = x;

  rmsnorm_forward(x, L.input_norm.data(), N, D, c.rms_eps, a.h1.data(), a.rstd1.data());
  float* q_out = c.qk_norm ? a.q_raw.data() : a.q.data();
  float* k_out = c.qk_norm ? a.k_raw.data() : a.k.data();
  linear(l, kQ, a.h1.data(), N, q_out, &a, dseed, s);
  linear(l, kK, a.h1.data(), N, k_out, &a, dseed, s);
  linear(l, kV, a.h1.data(), N, a.v.data(), &a, dseed, s);
  if (c.qk_norm) {
    rmsnorm_forward(a.q_raw.data(), L.q_norm.data(), N * H, Hd, c.rms_eps, a.q.data(), a.rstd_q.data());
    rmsnorm_forward(a.k_raw.data(), L.k_norm.data(), N * KV, Hd, c.rms_eps, a.k.data(), a.rstd_k.data());
  }
  rope_forward(a.q.data(), N, H, Hd, s.positions.data(), c.inv_freq.data());
  rope_forward(a.k.data(), N, KV, Hd, s.positions.data(), c.inv_freq.data());

  AttentionShape sh;
  sh.heads = H;
  sh.kv_heads = KV;
  sh.head_dim = Hd;
  sh.q_stride = qd;
  sh.out_stride = qd;
  sh.kv_stride = kvd;
  sh.scale = float(1.0 / std::sqrt(double(Hd)));
  if (cache) {
    const int64_t B = cache->batch, T = N / B, cap = cache->capacity, off = cache->length;
    float* kc = cache->k[size_t(l)].data();
    float* vc = cache->v[size_t(l)].data();
    for (int64_t bi = 0; bi < B; ++bi) {
      std::memcpy(kc + (bi * cap + off) * kvd, a.k.data() + bi * T * kvd, size_t(T * kvd) * 4);
      std::memcpy(vc + (bi * cap + off) * kvd, a.v.data() + bi * T * kvd, size_t(T * kvd) * 4);
    }
    sh.batch = B;
    sh.q_len = T;
    sh.kv_len = off + T;
    sh.q_offset = off;
    sh.kv_batch_stride = cap * kvd;
    attention_forward(sh, a.q.data(), kc, vc, nullptr, a.attn.data(), a.lse.data());
  } else {
    sh.batch = b->batch;
    sh.q_len = b->seq;
    sh.kv_len = b->seq;
    sh.kv_batch_stride = b->seq * kvd;
    attention_forward(sh, a.q.data(), a.k.data(), a.v.data(), b->segments, a.attn.data(),
                      a.lse.data());
  }
  check_cancel();

  // xm = x + attn·Woᵀ
  linear(l, kO, a.attn.data(), N, a.xm.data(), &a, dseed, s);
  add_into(a.xm.data(), x, N * D);
  rmsnorm_forward(a.xm.data(), L.post_norm.data(), N, D, c.rms_eps, a.h2.data(), a.rstd2.data());
  linear(l, kGate, a.h2.data(), N, a.g.data(), &a, dseed, s);
  linear(l, kUp, a.h2.data(), N, a.u.data(), &a, dseed, s);
  swiglu_forward(a.g.data(), a.u.data(), N * c.intermediate, a.act.data());
  // out = xm + act·Wdᵀ
  linear(l, kDown, a.act.data(), N, out, &a, dseed, s);
  add_into(out, a.xm.data(), N * D);
  check_cancel();
}

// dx: in = ∂L/∂(layer output), out = ∂L/∂(layer input).
void Model::layer_backward(int64_t l, LayerActs& a, const TrainBatch& b, float* dx, Scratch& s) {
  const ModelConfig& c = cfg_;
  const LayerWeights& L = layers_[size_t(l)];
  const int64_t N = a.N, D = c.hidden, H = c.heads, KV = c.kv_heads, Hd = c.head_dim, F = c.intermediate;
  const uint64_t dseed = b.dropout_seed;

  // MLP: out = xm + act·Wdᵀ
  linear_backward(l, kDown, a.act.data(), dx, N, s.dact.data(), false, a, dseed, s);
  swiglu_backward(a.g.data(), a.u.data(), s.dact.data(), N * F, s.dg.data(), s.du.data());
  linear_backward(l, kGate, a.h2.data(), s.dg.data(), N, s.dh.data(), false, a, dseed, s);
  linear_backward(l, kUp, a.h2.data(), s.du.data(), N, s.dh.data(), true, a, dseed, s);
  rmsnorm_backward(a.xm.data(), L.post_norm.data(), a.rstd2.data(), s.dh.data(), N, D, dx, true);
  check_cancel();

  // Attention: xm = x + attn·Woᵀ
  linear_backward(l, kO, a.attn.data(), dx, N, s.dattn.data(), false, a, dseed, s);
  AttentionShape sh;
  sh.batch = b.batch;
  sh.q_len = b.seq;
  sh.kv_len = b.seq;
  sh.heads = H;
  sh.kv_heads = KV;
  sh.head_dim = Hd;
  sh.q_stride = H * Hd;
  sh.out_stride = H * Hd;
  sh.kv_stride = KV * Hd;
  sh.kv_batch_stride = b.seq * KV * Hd;
  sh.scale = float(1.0 / std::sqrt(double(Hd)));
  attention_backward(sh, a.q.data(), a.k.data(), a.v.data(), b.segments, a.attn.data(),
                     a.lse.data(), s.dattn.data(), s.dq.data(), s.dk.data(), s.dv.data());
  rope_backward(s.dq.data(), N, H, Hd, s.positions.data(), c.inv_freq.data());
  rope_backward(s.dk.data(), N, KV, Hd, s.positions.data(), c.inv_freq.data());
  float* dq = s.dq.data();
  float* dk = s.dk.data();
  if (c.qk_norm) {
    rmsnorm_backward(a.q_raw.data(), L.q_norm.data(), a.rstd_q.data(), s.dq.data(), N * H, Hd,
                     s.dq2.data(), false);
    rmsnorm_backward(a.k_raw.data(), L.k_norm.data(), a.rstd_k.data(), s.dk.data(), N * KV, Hd,
                     s.dk2.data(), false);
    dq = s.dq2.data();
    dk = s.dk2.data();
  }
  linear_backward(l, kQ, a.h1.data(), dq, N, s.dh.data(), false, a, dseed, s);
  linear_backward(l, kK, a.h1.data(), dk, N, s.dh.data(), true, a, dseed, s);
  linear_backward(l, kV, a.h1.data(), s.dv.data(), N, s.dh.data(), true, a, dseed, s);
  rmsnorm_backward(a.x_in, L.input_norm.data(), a.rstd1.data(), s.dh.data(), N, D, dx, true);
  check_cancel();
}

// ---- whole model ------------------------------------------------------------------------

namespace {
int64_t max_rank_of(const std::map<std::string, std::unique_ptr<Adapter>>& adapters) {
  int64_t r = 0;
  for (const auto& kv : adapters) r = std::max(r, kv.second->spec.rank);
  return r;
}
}  // namespace

LossResult Model::train_step(const TrainBatch& b, bool checkpointing) {
  GemmScratchScope scratch;
  try {
    return run(b, true, checkpointing);
  } catch (...) {
    zero_grad();  // a half-accumulated step is discarded
    throw;
  }
}

LossResult Model::eval_loss(const TrainBatch& b) {
  GemmScratchScope scratch;
  return run(b, false, false);
}

LossResult Model::run(const TrainBatch& b, bool backward, bool checkpointing) {
  const ModelConfig& c = cfg_;
  const int64_t N = b.batch * b.seq, D = c.hidden, V = c.vocab, Lc = c.layers;
  Scratch s(c, N, max_rank_of(adapters_), backward);
  for (int64_t i = 0; i < N; ++i)
    s.positions[size_t(i)] = b.positions ? b.positions[i] : int32_t(i % b.seq);

  // Layer inputs: xs[l] feeds layer l, xs[L] is the final hidden state. In
  // forward-only mode two buffers alternate.
  const int64_t kept = backward ? Lc + 1 : 2;
  std::vector<Buffer<float>> xs;
  xs.reserve(size_t(kept));
  for (int64_t i = 0; i < kept; ++i) xs.emplace_back(MemCategory::Activations, size_t(N * D));
  auto x_at = [&](int64_t l) { return xs[size_t(backward ? l : l % 2)].data(); };

  const void* table = embed_dtype_ == DType::F32 ? static_cast<const void*>(embed_f32_.data())
                                                 : static_cast<const void*>(embed_bf16_.data());
  embedding_forward(embed_dtype_, table, D, b.input_ids, N, x_at(0));

  // Per-layer activations: one reusable set (checkpointing / forward only) or
  // one per layer.
  std::vector<std::unique_ptr<LayerActs>> acts;
  const bool per_layer = backward && !checkpointing;
  for (int64_t i = 0; i < (per_layer ? Lc : 1); ++i) {
    acts.push_back(std::make_unique<LayerActs>(c, N));
    acts.back()->training = backward;
  }
  for (int64_t l = 0; l < Lc; ++l) {
    LayerActs& a = *acts[size_t(per_layer ? l : 0)];
    layer_forward(l, x_at(l), x_at(l + 1), a, &b, nullptr, s);
  }

  // Final norm and chunked cross-entropy.
  const float* xf = x_at(Lc);
  Buffer<float> hf(MemCategory::Activations, size_t(N * D)), rstdf(MemCategory::Activations, size_t(N));
  rmsnorm_forward(xf, final_norm_.data(), N, D, c.rms_eps, hf.data(), rstdf.data());
  Buffer<int32_t> targets(MemCategory::Workspace, size_t(N));
  LossResult result;
  for (int64_t i = 0; i < N; ++i) {
    int64_t t = i % b.seq;
    int32_t tgt = t + 1 < b.seq ? b.labels[i + 1] : -100;
    if (tgt != -100 && (tgt < 0 || tgt >= V)) throw StateError("label id out of the vocabulary");
    targets[size_t(i)] = tgt;
    if (tgt != -100) ++result.tokens;
  }
  const WeightRef head = lm_head_ref();
  const int64_t chunk = loss_chunk_rows(N, V);
  Buffer<float> logits(MemCategory::Workspace, size_t(chunk * V));
  Buffer<float> dhf;
  if (backward) dhf = Buffer<float>(MemCategory::Workspace, size_t(N * D));
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t rows = std::min(chunk, N - r0);
    bool any = false;
    for (int64_t i = r0; i < r0 + rows; ++i) any |= targets[size_t(i)] != -100;
    if (!any) {
      if (backward) std::fill(dhf.data() + r0 * D, dhf.data() + (r0 + rows) * D, 0.0f);
      continue;
    }
    linear_forward(head, hf.data() + r0 * D, rows, logits.data(), false);
    result.loss_sum += cross_entropy(logits.data(), targets.data() + r0, rows, V, b.grad_scale, backward);
    if (backward) linear_backward_input(head, logits.data(), rows, dhf.data() + r0 * D, false);
    check_cancel();
  }
  logits.reset();
  if (!backward) return result;

  // Backward: dx = ∂L/∂x_L, then layer by layer down to the embeddings.
  Buffer<float> dx(MemCategory::Workspace, size_t(N * D));
  rmsnorm_backward(xf, final_norm_.data(), rstdf.data(), dhf.data(), N, D, dx.data(), false);
  dhf.reset();
  hf.reset();
  for (int64_t l = Lc - 1; l >= 0; --l) {
    LayerActs& a = *acts[size_t(per_layer ? l : 0)];
    if (!per_layer) layer_forward(l, x_at(l), s.tmp_d.data(), a, &b, nullptr, s);  // recompute
    layer_backward(l, a, b, dx.data(), s);
  }
  return result;
}

void Model::zero_grad() {
  for (auto& kv : adapters_)
    for (auto& layer : kv.second->layers)
      for (auto& m : layer)
        if (m) {
          if (!m->gA.empty()) std::fill(m->gA.data(), m->gA.data() + m->gA.size(), 0.0f);
          if (!m->gB.empty()) std::fill(m->gB.data(), m->gB.data() + m->gB.size(), 0.0f);
        }
}

double Model::optimizer_step(const OptimizerSettings& o) {
  std::vector<Adapter*> trained;
  for (const auto& name : adapter_order_) {
    Adapter* a = adapters_[name].get();
    if (a->enabled && a->trainable && !a->merged) trained.push_back(a);
  }
  double sq = 0;
  for (Adapter* a : trained)
    for (auto& layer : a->layers)
      for (auto& m : layer)
        if (m) {
          ensure_training_state(*m, a->spec.rank);
          sq += sum_squares(m->gA.data(), int64_t(m->gA.size()));
          sq += sum_squares(m->gB.data(), int64_t(m->gB.size()));
        }
  const double norm = std::sqrt(sq);
  float clip = 1.f;
  if (o.max_grad_norm > 0) clip = float(std::min(1.0, double(o.max_grad_norm) / (norm + 1e-6)));
  for (Adapter* a : trained) {
    ++a->optimizer_steps;
    AdamWParams p;
    p.lr = o.lr;
    p.beta1 = o.beta1;
    p.beta2 = o.beta2;
    p.eps = o.eps;
    p.weight_decay = o.weight_decay;
    p.step = a->optimizer_steps;
    p.grad_scale = clip;
    for (auto& layer : a->layers)
      for (auto& m : layer)
        if (m) {
          adamw_step(m->A.data(), m->gA.data(), m->mA.data(), m->vA.data(), int64_t(m->A.size()), p);
          adamw_step(m->B.data(), m->gB.data(), m->mB.data(), m->vB.data(), int64_t(m->B.size()), p);
        }
  }
  zero_grad();
  return norm;
}

// ---- generation -------------------------------------------------------------------------

std::unique_ptr<KvCache> Model::new_cache(int64_t batch, int64_t capacity) {
  auto cache = std::make_unique<KvCache>();
  cache->batch = batch;
  cache->capacity = capacity;
  const size_t n = size_t(batch * capacity * cfg_.kv_heads * cfg_.head_dim);
  for (int64_t l = 0; l < cfg_.layers; ++l) {
    cache->k.emplace_back(MemCategory::Activations, n);
    cache->v.emplace_back(MemCategory::Activations, n);
  }
  return cache;
}

void Model::forward_cached(KvCache& cache, const int32_t* tokens, int64_t count,
                           bool all_positions, float* logits_out) {
  GemmScratchScope scratch;
  const ModelConfig& c = cfg_;
  if (cache.length + count > cache.capacity)
    throw StateError("the KV cache is full (" + std::to_string(cache.capacity) + " positions)");
  const int64_t B = cache.batch, N = B * count, D = c.hidden;
  for (int64_t i = 0; i < N; ++i)
    if (tokens[i] < 0 || tokens[i] >= c.vocab) throw StateError("token id out of the vocabulary");
  Scratch s(c, N, max_rank_of(adapters_), false);
  for (int64_t i = 0; i < N; ++i) s.positions[size_t(i)] = int32_t(cache.length + i % count);
  Buffer<float> x0(MemCategory::Activations, size_t(N * D)), x1(MemCategory::Activations, size_t(N * D));
  const void* table = embed_dtype_ == DType::F32 ? static_cast<const void*>(embed_f32_.data())
                                                 : static_cast<const void*>(embed_bf16_.data());
  embedding_forward(embed_dtype_, table, D, tokens, N, x0.data());
  LayerActs a(c, N);
  float* x = x0.data();
  float* y = x1.data();
  for (int64_t l = 0; l < c.layers; ++l) {
    layer_forward(l, x, y, a, nullptr, &cache, s);
    std::swap(x, y);
  }
  cache.length += count;
  // Final norm on the rows whose logits are wanted.
  const int64_t rows = all_positions ? N : B;
  Buffer<float> h(MemCategory::Workspace, size_t(rows * D)), rstd(MemCategory::Workspace, size_t(rows));
  if (all_positions) {
    rmsnorm_forward(x, final_norm_.data(), N, D, c.rms_eps, h.data(), rstd.data());
  } else {
    for (int64_t bi = 0; bi < B; ++bi)
      rmsnorm_forward(x + (bi * count + count - 1) * D, final_norm_.data(), 1, D, c.rms_eps,
                      h.data() + bi * D, rstd.data() + bi);
  }
  linear_forward(lm_head_ref(), h.data(), rows, logits_out, false);
}

}  // namespace ls
