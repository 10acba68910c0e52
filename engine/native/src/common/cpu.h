// Run-time CPU feature selection. Kernels are compiled once per instruction
// set (scalar, AVX2+FMA, AVX-512F) and the best one the CPU supports is chosen
// when first used. LORA_STUDIO_ISA=scalar|avx2|avx512 forces a lower level
// (tests use it to cover every path on one machine).
#pragma once

namespace ls {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

Isa detected_isa();       // what the CPU supports (and the build contains)
Isa active_isa();         // what kernels use now
void set_active_isa(Isa isa);  // clamped to detected_isa()
const char* isa_name(Isa isa);

}  // namespace ls
