#include "cpu.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace ls {
namespace {

Isa probe() {
#if defined(LS_HAVE_X86_KERNELS) && (defined(__x86_64__) || defined(_M_X64))
#if defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
#endif
  return Isa::Scalar;
}

Isa from_env(Isa detected) {
  const char* env = std::getenv("LORA_STUDIO_ISA");
  if (!env) return detected;
  Isa want = detected;
  if (!std::strcmp(env, "scalar")) want = Isa::Scalar;
  else if (!std::strcmp(env, "avx2")) want = Isa::Avx2;
  else if (!std::strcmp(env, "avx512")) want = Isa::Avx512;
  return int(want) < int(detected) ? want : detected;
}

std::atomic<int>& active() {
  static std::atomic<int> a{int(from_env(detected_isa()))};
  return a;
}

}  // namespace

Isa detected_isa() {
  static const Isa isa = probe();
  return isa;
}

Isa active_isa() { return Isa(active().load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) {
  if (int(isa) > int(detected_isa())) isa = detected_isa();
  active().store(int(isa));
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace ls
