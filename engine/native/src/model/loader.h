// Loads base weights from safetensors files into a Model through memory maps,
// one tensor at a time (each converted or NF4-quantized in parallel), so peak
// memory stays near the size of the converted model. The TypeScript side has
// already parsed and validated the headers (engine/model/folder.ts) and passes
// absolute byte ranges.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model.h"

namespace ls {

enum class TensorRole : int { Embedding = 0, LmHead, FinalNorm, Norm, Projection, Bias };

struct TensorSource {
  std::string file;
  int64_t offset = 0;      // absolute byte offset of the data in the file
  int64_t byte_length = 0;
  DType dtype = DType::F32;  // F32, F16 or BF16
  TensorRole role = TensorRole::Embedding;
  int64_t layer = 0;
  int index = 0;           // Norm: 0 input, 1 post, 2 q, 3 k; Projection/Bias: Proj
};

// Calls progress(done, total) after each tensor. Throws std::runtime_error
// naming the file when it cannot be opened or mapped.
void load_tensors(Model& model, const std::vector<TensorSource>& tensors,
                  const std::function<void(size_t, size_t)>& progress);

}  // namespace ls
