// Node-API entry point of the native core. Each exported function validates
// nothing: the TypeScript layer in engine/ checks every argument first.
#include <napi.h>

#include "common/cpu.h"
#include "common/memory.h"
#include "common/threads.h"

namespace {

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("isa", ls::isa_name(ls::active_isa()));
  o.Set("detectedIsa", ls::isa_name(ls::detected_isa()));
  o.Set("threads", ls::num_threads());
  return o;
}

Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
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

Napi::Value ResetPeaks(const Napi::CallbackInfo& info) {
  ls::mem_reset_peaks();
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuInfo", Napi::Function::New(env, CpuInfo));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats));
  exports.Set("resetPeaks", Napi::Function::New(env, ResetPeaks));
  return exports;
}

}  // namespace

NODE_API_MODULE(lora_studio_native, Init)
