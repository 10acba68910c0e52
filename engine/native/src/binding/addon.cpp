// Node-API entry point of the native core. The TypeScript layer (engine/)
// validates every argument first; this file only converts and trusts them.
// Long calls run on libuv's worker pool (AsyncWorker -> Promise) so the JS
// event loop stays free; cancel() makes the running call reject with an
// error whose code is 'ECANCELLED'.
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "common/cpu.h"
#include "common/memory.h"
#include "common/threads.h"
#include "kernels/gemm.h"
#include "model/bench.h"
#include "model/loader.h"
#include "model/memory_plan.h"
#include "model/model.h"

namespace {

// ---- helpers -------------------------------------------------------------------------

double num(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}
bool flag(const Napi::Object& o, const char* key, bool fallback = false) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : fallback;
}
std::vector<int32_t> int32s(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray()) return {};
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

Napi::Object memory_stats(Napi::Env env) {
  ls::MemStats s = ls::mem_stats();
  Napi::Object current = Napi::Object::New(env), peak = Napi::Object::New(env);
  for (int i = 0; i < ls::kMemCategoryCount; ++i) {
    const char* name = ls::mem_category_name(ls::MemCategory(i));
    current.Set(name, double(s.current[i]));
    peak.Set(name, double(s.peak[i]));
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("current", current);
  o.Set("peak", peak);
  o.Set("totalCurrent", double(s.total_current));
  o.Set("totalPeak", double(s.total_peak));
  return o;
}

// Runs `work` off the JS thread and settles a promise with `result` (or the
// exception's message). `done` runs on the JS thread either way.
class LambdaWorker : public Napi::AsyncWorker {
 public:
  LambdaWorker(Napi::Env env, std::function<void()> work,
               std::function<Napi::Value(Napi::Env)> result, std::function<void()> done)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), result_(std::move(result)), done_(std::move(done)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    struct ReleaseScratch {  // a call's GEMM scratch lives for the call only
      ~ReleaseScratch() { ls::gemm_release_scratch(); }
    } release;
    try {
      work_();
    } catch (const ls::Cancelled&) {
      cancelled_ = true;
      SetError("cancelled");
    } catch (const std::bad_alloc&) {
      SetError("out of memory: the engine could not allocate a buffer; use a shorter sequence, a "
               "smaller batch or rank, or QLoRA");
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    done_();
    Napi::Env env = Env();
    try {
      deferred_.Resolve(result_ ? result_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    done_();
    Napi::Error err = Napi::Error::New(Env(), e.Message());
    if (cancelled_) err.Set("code", "ECANCELLED");
    deferred_.Reject(err.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> result_;
  std::function<void()> done_;
  bool cancelled_ = false;
};

// ---- KV cache ------------------------------------------------------------------------

class NativeCache : public Napi::ObjectWrap<NativeCache> {
 public:
  static Napi::FunctionReference constructor;
  static void Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "NativeCache", {
      InstanceAccessor<&NativeCache::Length>("length"),
      InstanceAccessor<&NativeCache::Capacity>("capacity"),
      InstanceMethod<&NativeCache::Reset>("reset"),
      InstanceMethod<&NativeCache::Truncate>("truncate"),
      InstanceMethod<&NativeCache::Dispose>("dispose"),
    });
    constructor = Napi::Persistent(f);
    constructor.SuppressDestruct();
  }
  explicit NativeCache(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeCache>(info) {}
  std::unique_ptr<ls::KvCache> cache;

 private:
  Napi::Value Length(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), cache ? double(cache->length) : 0);
  }
  Napi::Value Capacity(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), cache ? double(cache->capacity) : 0);
  }
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    if (cache) cache->length = 0;
    return info.Env().Undefined();
  }
  Napi::Value Truncate(const Napi::CallbackInfo& info) {
    int64_t n = info[0].As<Napi::Number>().Int64Value();
    if (cache && n < cache->length) cache->length = n;
    return info.Env().Undefined();
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    cache.reset();
    return info.Env().Undefined();
  }
};
Napi::FunctionReference NativeCache::constructor;

// Shape fields of a model config object (the same keys NativeModel takes).
ls::ModelConfig read_config(const Napi::Object& c) {
  ls::ModelConfig cfg;
  cfg.vocab = int64_t(num(c, "vocab", 0));
  cfg.hidden = int64_t(num(c, "hidden", 0));
  cfg.intermediate = int64_t(num(c, "intermediate", 0));
  cfg.layers = int64_t(num(c, "layers", 0));
  cfg.heads = int64_t(num(c, "heads", 0));
  cfg.kv_heads = int64_t(num(c, "kvHeads", 0));
  cfg.head_dim = int64_t(num(c, "headDim", 0));
  cfg.rms_eps = float(num(c, "rmsEps", 1e-6));
  cfg.qkv_bias = flag(c, "qkvBias");
  cfg.o_bias = flag(c, "oBias");
  cfg.mlp_bias = flag(c, "mlpBias");
  cfg.qk_norm = flag(c, "qkNorm");
  cfg.tied = flag(c, "tied");
  return cfg;
}

ls::BaseFormat read_format(const std::string& format) {
  return format == "nf4" ? ls::BaseFormat::NF4
         : format == "f32" ? ls::BaseFormat::F32 : ls::BaseFormat::BF16;
}

// ---- model ---------------------------------------------------------------------------

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::FunctionReference constructor;
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "NativeModel", {
      InstanceMethod<&NativeModel::LoadTensors>("loadTensors"),
      InstanceMethod<&NativeModel::InitRandom>("initRandom"),
      InstanceMethod<&NativeModel::AddAdapter>("addAdapter"),
      InstanceMethod<&NativeModel::RemoveAdapter>("removeAdapter"),
      InstanceMethod<&NativeModel::SetAdapterEnabled>("setAdapterEnabled"),
      InstanceMethod<&NativeModel::SetAdapterTrainable>("setAdapterTrainable"),
      InstanceMethod<&NativeModel::SetOptimizerSteps>("setOptimizerSteps"),
      InstanceMethod<&NativeModel::AdapterInfo>("adapterInfo"),
      InstanceMethod<&NativeModel::AdapterNames>("adapterNames"),
      InstanceMethod<&NativeModel::MergeAdapter>("mergeAdapter"),
      InstanceMethod<&NativeModel::UnmergeAdapter>("unmergeAdapter"),
      InstanceMethod<&NativeModel::ReadAdapterTensor>("readAdapterTensor"),
      InstanceMethod<&NativeModel::WriteAdapterTensor>("writeAdapterTensor"),
      InstanceMethod<&NativeModel::TrainStep>("trainStep"),
      InstanceMethod<&NativeModel::EvalLoss>("evalLoss"),
      InstanceMethod<&NativeModel::OptimizerStep>("optimizerStep"),
      InstanceMethod<&NativeModel::ZeroGrad>("zeroGrad"),
      InstanceMethod<&NativeModel::NewCache>("newCache"),
      InstanceMethod<&NativeModel::Forward>("forward"),
      InstanceMethod<&NativeModel::Cancel>("cancel"),
      InstanceMethod<&NativeModel::BaseBytes>("baseBytes"),
      InstanceMethod<&NativeModel::Dispose>("dispose"),
    });
    constructor = Napi::Persistent(f);
    constructor.SuppressDestruct();
    exports.Set("NativeModel", f);
  }

  // new NativeModel(config, format)
  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    Napi::Object c = info[0].As<Napi::Object>();
    ls::ModelConfig cfg = read_config(c);
    Napi::Float32Array inv = c.Get("invFreq").As<Napi::Float32Array>();
    cfg.inv_freq.assign(inv.Data(), inv.Data() + inv.ElementLength());
    model_ = std::make_unique<ls::Model>(cfg, read_format(info[1].As<Napi::String>().Utf8Value()));
  }

 private:
  ls::Model& model(Napi::Env env) {
    if (!model_) throw Napi::Error::New(env, "this model has been disposed");
    return *model_;
  }
  void check_idle(Napi::Env env) {
    model(env);
    if (busy_) throw Napi::Error::New(env, "the engine is busy with another call on this model; await it first");
  }
  // Starts `work` in the background with the model marked busy.
  Napi::Value Async(const Napi::CallbackInfo& info, std::function<void()> work,
                    std::function<Napi::Value(Napi::Env)> result = nullptr) {
    check_idle(info.Env());
    busy_ = true;
    model_->clear_cancel();
    Ref();
    auto* w = new LambdaWorker(info.Env(), std::move(work), std::move(result), [this] {
      busy_ = false;
      Unref();
    });
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  Napi::Value LoadTensors(const Napi::CallbackInfo& info) {
    Napi::Array list = info[0].As<Napi::Array>();
    std::vector<ls::TensorSource> sources;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Napi::Object t = list.Get(i).As<Napi::Object>();
      ls::TensorSource s;
      s.file = t.Get("file").As<Napi::String>().Utf8Value();
      s.offset = int64_t(num(t, "offset", 0));
      s.byte_length = int64_t(num(t, "byteLength", 0));
      std::string dt = t.Get("dtype").As<Napi::String>().Utf8Value();
      s.dtype = dt == "BF16" ? ls::DType::BF16 : dt == "F16" ? ls::DType::F16 : ls::DType::F32;
      s.role = ls::TensorRole(int(num(t, "role", 0)));
      s.layer = int64_t(num(t, "layer", 0));
      s.index = int(num(t, "index", 0));
      sources.push_back(std::move(s));
    }
    ls::Model* m = &model(info.Env());
    return Async(info, [m, sources] {
      ls::load_tensors(*m, sources, [m](size_t, size_t) { (void)m; });
    });
  }

  Napi::Value InitRandom(const Napi::CallbackInfo& info) {
    uint64_t seed = uint64_t(info[0].As<Napi::Number>().Int64Value());
    float std = info[1].As<Napi::Number>().FloatValue();
    ls::Model* m = &model(info.Env());
    return Async(info, [m, seed, std] { m->init_random(seed, std); });
  }

  Napi::Value AddAdapter(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    Napi::Object o = info[0].As<Napi::Object>();
    ls::AdapterSpec s;
    s.name = o.Get("name").As<Napi::String>().Utf8Value();
    s.rank = int64_t(num(o, "rank", 8));
    s.alpha = float(num(o, "alpha", 16));
    s.dropout = float(num(o, "dropout", 0));
    s.rslora = flag(o, "rslora");
    s.target_mask = uint32_t(num(o, "targetMask", 0));
    s.seed = uint64_t(num(o, "seed", 0));
    try {
      model_->add_adapter(s);
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    return info.Env().Undefined();
  }

  template <class F>
  Napi::Value Guard(const Napi::CallbackInfo& info, F&& f) {
    check_idle(info.Env());
    try {
      return f();
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
  }

  Napi::Value RemoveAdapter(const Napi::CallbackInfo& info) {
    return Guard(info, [&] {
      model_->remove_adapter(info[0].As<Napi::String>().Utf8Value());
      return info.Env().Undefined();
    });
  }
  Napi::Value SetAdapterEnabled(const Napi::CallbackInfo& info) {
    return Guard(info, [&] {
      model_->set_adapter_enabled(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Boolean>().Value());
      return info.Env().Undefined();
    });
  }
  Napi::Value SetAdapterTrainable(const Napi::CallbackInfo& info) {
    return Guard(info, [&] {
      model_->set_adapter_trainable(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Boolean>().Value());
      return info.Env().Undefined();
    });
  }
  Napi::Value SetOptimizerSteps(const Napi::CallbackInfo& info) {
    return Guard(info, [&] {
      model_->adapter(info[0].As<Napi::String>().Utf8Value()).optimizer_steps =
          info[1].As<Napi::Number>().Int64Value();
      return info.Env().Undefined();
    });
  }
  Napi::Value AdapterNames(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto names = model(env).adapter_names();
    Napi::Array a = Napi::Array::New(env, names.size());
    for (size_t i = 0; i < names.size(); ++i) a.Set(uint32_t(i), names[i]);
    return a;
  }
  Napi::Value AdapterInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    try {
      const ls::Adapter& a = model(env).adapter(info[0].As<Napi::String>().Utf8Value());
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", a.spec.name);
      o.Set("rank", double(a.spec.rank));
      o.Set("alpha", a.spec.alpha);
      o.Set("dropout", a.spec.dropout);
      o.Set("rslora", a.spec.rslora);
      o.Set("targetMask", double(a.spec.target_mask));
      o.Set("scale", a.scale);
      o.Set("enabled", a.enabled);
      o.Set("trainable", a.trainable);
      o.Set("merged", a.merged);
      o.Set("optimizerSteps", double(a.optimizer_steps));
      return o;
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }
  Napi::Value MergeAdapter(const Napi::CallbackInfo& info) {
    std::string name = info[0].As<Napi::String>().Utf8Value();
    ls::Model* m = &model(info.Env());
    return Async(info, [m, name] { m->merge_adapter(name); });
  }
  Napi::Value UnmergeAdapter(const Napi::CallbackInfo& info) {
    std::string name = info[0].As<Napi::String>().Utf8Value();
    ls::Model* m = &model(info.Env());
    return Async(info, [m, name] { m->unmerge_adapter(name); });
  }
  Napi::Value ReadAdapterTensor(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ls::Buffer<float>& b = model_->adapter_tensor(info[0].As<Napi::String>().Utf8Value(),
                                                    info[1].As<Napi::Number>().Int64Value(),
                                                    info[2].As<Napi::Number>().Int32Value(),
                                                    info[3].As<Napi::Number>().Int32Value());
      Napi::Float32Array out = Napi::Float32Array::New(info.Env(), b.size());
      std::memcpy(out.Data(), b.data(), b.bytes());
      return out;
    });
  }
  Napi::Value WriteAdapterTensor(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ls::Buffer<float>& b = model_->adapter_tensor(info[0].As<Napi::String>().Utf8Value(),
                                                    info[1].As<Napi::Number>().Int64Value(),
                                                    info[2].As<Napi::Number>().Int32Value(),
                                                    info[3].As<Napi::Number>().Int32Value());
      Napi::Float32Array src = info[4].As<Napi::Float32Array>();
      if (src.ElementLength() != b.size())
        throw Napi::Error::New(info.Env(), "adapter tensor has " + std::to_string(b.size()) +
                                               " values, got " + std::to_string(src.ElementLength()));
      std::memcpy(b.data(), src.Data(), b.bytes());
      return info.Env().Undefined();
    });
  }

  struct BatchData {
    ls::TrainBatch batch;
    std::vector<int32_t> ids, labels, positions, segments;
    bool checkpointing = true;
  };
  static std::shared_ptr<BatchData> read_batch(const Napi::Object& o) {
    auto d = std::make_shared<BatchData>();
    d->ids = int32s(o, "inputIds");
    d->labels = int32s(o, "labels");
    d->positions = int32s(o, "positions");
    d->segments = int32s(o, "segments");
    d->batch.batch = int64_t(num(o, "batch", 1));
    d->batch.seq = int64_t(num(o, "seq", 1));
    d->batch.grad_scale = float(num(o, "gradScale", 1));
    d->batch.dropout_seed = uint64_t(num(o, "dropoutSeed", 0));
    d->checkpointing = flag(o, "checkpointing", true);
    d->batch.input_ids = d->ids.data();
    d->batch.labels = d->labels.data();
    d->batch.positions = d->positions.empty() ? nullptr : d->positions.data();
    d->batch.segments = d->segments.empty() ? nullptr : d->segments.data();
    return d;
  }
  static Napi::Value loss_value(Napi::Env env, const ls::LossResult& r) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("lossSum", r.loss_sum);
    o.Set("tokens", double(r.tokens));
    return o;
  }

  Napi::Value TrainStep(const Napi::CallbackInfo& info) {
    auto d = read_batch(info[0].As<Napi::Object>());
    auto r = std::make_shared<ls::LossResult>();
    ls::Model* m = &model(info.Env());
    return Async(info, [m, d, r] { *r = m->train_step(d->batch, d->checkpointing); },
                 [r](Napi::Env env) { return loss_value(env, *r); });
  }
  Napi::Value EvalLoss(const Napi::CallbackInfo& info) {
    auto d = read_batch(info[0].As<Napi::Object>());
    auto r = std::make_shared<ls::LossResult>();
    ls::Model* m = &model(info.Env());
    return Async(info, [m, d, r] { *r = m->eval_loss(d->batch); },
                 [r](Napi::Env env) { return loss_value(env, *r); });
  }
  Napi::Value OptimizerStep(const Napi::CallbackInfo& info) {
    Napi::Object o = info[0].As<Napi::Object>();
    ls::OptimizerSettings s;
    s.lr = float(num(o, "lr", 1e-4));
    s.beta1 = float(num(o, "beta1", 0.9));
    s.beta2 = float(num(o, "beta2", 0.999));
    s.eps = float(num(o, "eps", 1e-8));
    s.weight_decay = float(num(o, "weightDecay", 0));
    s.max_grad_norm = float(num(o, "maxGradNorm", 1));
    auto norm = std::make_shared<double>(0);
    ls::Model* m = &model(info.Env());
    return Async(info, [m, s, norm] { *norm = m->optimizer_step(s); },
                 [norm](Napi::Env env) { return Napi::Number::New(env, *norm); });
  }
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    return Guard(info, [&] {
      model_->zero_grad();
      return info.Env().Undefined();
    });
  }
  Napi::Value NewCache(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      Napi::Object obj = NativeCache::constructor.New({});
      NativeCache* c = NativeCache::Unwrap(obj);
      c->cache = model_->new_cache(info[0].As<Napi::Number>().Int64Value(),
                                   info[1].As<Napi::Number>().Int64Value());
      return obj;
    });
  }
  // forward(cache, tokens: Int32Array [B*count], count, allPositions) -> Float32Array
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    NativeCache* c = NativeCache::Unwrap(info[0].As<Napi::Object>());
    if (!c->cache) throw Napi::Error::New(env, "this KV cache has been disposed");
    Napi::Int32Array t = info[1].As<Napi::Int32Array>();
    auto tokens = std::make_shared<std::vector<int32_t>>(t.Data(), t.Data() + t.ElementLength());
    int64_t count = info[2].As<Napi::Number>().Int64Value();
    bool all = info[3].As<Napi::Boolean>().Value();
    int64_t rows = all ? c->cache->batch * count : c->cache->batch;
    auto logits = std::make_shared<std::vector<float>>(size_t(rows * model(env).config().vocab));
    ls::Model* m = model_.get();
    ls::KvCache* kv = c->cache.get();
    auto cacheRef = std::make_shared<Napi::ObjectReference>(Napi::Persistent(info[0].As<Napi::Object>()));
    return Async(info, [m, kv, tokens, count, all, logits] {
      m->forward_cached(*kv, tokens->data(), count, all, logits->data());
    }, [logits, cacheRef](Napi::Env env) -> Napi::Value {
      Napi::Float32Array out = Napi::Float32Array::New(env, logits->size());
      std::memcpy(out.Data(), logits->data(), logits->size() * 4);
      cacheRef->Reset();
      return out;
    });
  }
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    if (model_) model_->request_cancel();
    return info.Env().Undefined();
  }
  Napi::Value BaseBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(model(info.Env()).base_bytes()));
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    check_idle(info.Env());
    model_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<ls::Model> model_;
  bool busy_ = false;
};
Napi::FunctionReference NativeModel::constructor;

// ---- module functions ------------------------------------------------------------------

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("isa", ls::isa_name(ls::active_isa()));
  o.Set("detectedIsa", ls::isa_name(ls::detected_isa()));
  o.Set("threads", ls::num_threads());
  return o;
}

Napi::Value MemoryStats(const Napi::CallbackInfo& info) { return memory_stats(info.Env()); }

Napi::Value ResetPeaks(const Napi::CallbackInfo& info) {
  ls::mem_reset_peaks();
  return info.Env().Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  ls::set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value MeasurePeakFlops(const Napi::CallbackInfo& info) {
  double seconds = info[0].As<Napi::Number>().DoubleValue();
  auto result = std::make_shared<double>(0);
  auto* w = new LambdaWorker(info.Env(), [seconds, result] { *result = ls::measure_peak_flops(seconds); },
                             [result](Napi::Env env) { return Napi::Number::New(env, *result); }, [] {});
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// benchLinear(tokens, out, in, 'f32'|'bf16'|'nf4', iterations) -> Promise<seconds per call>
Napi::Value BenchLinear(const Napi::CallbackInfo& info) {
  int64_t t = info[0].As<Napi::Number>().Int64Value();
  int64_t out = info[1].As<Napi::Number>().Int64Value();
  int64_t in = info[2].As<Napi::Number>().Int64Value();
  std::string kind = info[3].As<Napi::String>().Utf8Value();
  int iterations = info[4].As<Napi::Number>().Int32Value();
  ls::DType dt = kind == "nf4" ? ls::DType::NF4 : kind == "bf16" ? ls::DType::BF16 : ls::DType::F32;
  auto result = std::make_shared<double>(0);
  auto* w = new LambdaWorker(info.Env(), [=] { *result = ls::bench_linear_forward(t, out, in, dt, iterations); },
                             [result](Napi::Env env) { return Napi::Number::New(env, *result); }, [] {});
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Object usage_object(Napi::Env env, const ls::MemUsage& u) {
  Napi::Object o = Napi::Object::New(env);
  for (int i = 0; i < ls::kMemCategoryCount; ++i)
    o.Set(ls::mem_category_name(ls::MemCategory(i)), double(u.bytes[i]));
  o.Set("total", double(u.total));
  return o;
}

// planMemory({config, format, adapters: [{rank, targetMask}], batch, seq,
// checkpointing, packed, threads}) -> the memory plan of one training step.
Napi::Value PlanMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object spec = info[0].As<Napi::Object>();
  ls::StepPlanInput in;
  in.config = read_config(spec.Get("config").As<Napi::Object>());
  in.format = read_format(spec.Get("format").As<Napi::String>().Utf8Value());
  Napi::Array adapters = spec.Get("adapters").As<Napi::Array>();
  for (uint32_t i = 0; i < adapters.Length(); ++i) {
    Napi::Object a = adapters.Get(i).As<Napi::Object>();
    in.adapters.push_back({int64_t(num(a, "rank", 8)), uint32_t(num(a, "targetMask", 0))});
  }
  in.batch = int64_t(num(spec, "batch", 1));
  in.seq = int64_t(num(spec, "seq", 1));
  in.checkpointing = flag(spec, "checkpointing", true);
  in.packed = flag(spec, "packed", false);
  in.threads = int(num(spec, "threads", ls::num_threads()));
  const ls::MemoryPlan plan = ls::plan_training_step(in);
  Napi::Object phases = Napi::Object::New(env);
  for (int p = 0; p < ls::kStepPhaseCount; ++p)
    phases.Set(ls::step_phase_name(ls::StepPhase(p)), usage_object(env, plan.phase_peak[p]));
  Napi::Object o = Napi::Object::New(env);
  o.Set("threads", in.threads);
  o.Set("isa", ls::isa_name(ls::active_isa()));
  o.Set("resident", usage_object(env, plan.resident));
  o.Set("phases", phases);
  o.Set("peak", usage_object(env, plan.peak));
  o.Set("atPeak", usage_object(env, plan.at_peak));
  o.Set("peakPhase", ls::step_phase_name(plan.peak_phase));
  o.Set("peakPoint", plan.peak_point);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("benchLinear", Napi::Function::New(env, BenchLinear));
  NativeCache::Init(env);
  NativeModel::Init(env, exports);
  exports.Set("cpuInfo", Napi::Function::New(env, CpuInfo));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats));
  exports.Set("resetPeaks", Napi::Function::New(env, ResetPeaks));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("measurePeakFlops", Napi::Function::New(env, MeasurePeakFlops));
  exports.Set("planMemory", Napi::Function::New(env, PlanMemory));
  return exports;
}

}  // namespace

NODE_API_MODULE(lora_studio_native, Init)
