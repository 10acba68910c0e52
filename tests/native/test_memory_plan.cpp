// The memory plan against the tracked allocator: with one thread the schedule
// is deterministic, so the plan's per-category peaks and the peak of the total
// over a training step (trainStep + optimizerStep) must equal the measured
// ones to the byte.
#include <cmath>
#include <string>
#include <vector>

#include "check.h"
#include "common/memory.h"
#include "common/threads.h"
#include "model/memory_plan.h"
#include "model/model.h"

using namespace ls;

namespace {

struct PlanCase {
  const char* name;
  ModelConfig cfg;
  BaseFormat format;
  std::vector<PlanAdapter> adapters;
  int64_t batch, seq;
  bool checkpointing, packed;
};

ModelConfig shape(int64_t vocab, int64_t hidden, int64_t inter, int64_t layers, int64_t heads,
                  int64_t kv_heads, int64_t head_dim) {
  ModelConfig c;
  c.vocab = vocab;
  c.hidden = hidden;
  c.intermediate = inter;
  c.layers = layers;
  c.heads = heads;
  c.kv_heads = kv_heads;
  c.head_dim = head_dim;
  for (int64_t i = 0; i < head_dim / 2; ++i)
    c.inv_freq.push_back(float(std::pow(10000.0, -2.0 * double(i) / double(head_dim))));
  return c;
}

// Runs the case: warm-up step (creates gradients and moments), then the
// measured step; checks the measured peaks against the plan.
void check_case(const PlanCase& pc) {
  Model m(pc.cfg, pc.format);
  m.init_random(7, 0.02f);
  for (size_t i = 0; i < pc.adapters.size(); ++i) {
    AdapterSpec s;
    s.name = "a" + std::to_string(i);
    s.rank = pc.adapters[i].rank;
    s.target_mask = pc.adapters[i].target_mask;
    s.dropout = i == 0 ? 0.1f : 0.f;
    m.add_adapter(s);
  }
  const int64_t N = pc.batch * pc.seq;
  std::vector<int32_t> ids(static_cast<size_t>(N)), segments(ids), positions(ids);
  for (int64_t i = 0; i < N; ++i) {
    ids[size_t(i)] = int32_t((i * 7 + 3) % pc.cfg.vocab);
    const int64_t t = i % pc.seq, half = pc.seq / 2;  // two packed examples per row
    segments[size_t(i)] = int32_t(t < half ? 0 : 1);
    positions[size_t(i)] = int32_t(t < half ? t : t - half);
  }
  TrainBatch b;
  b.batch = pc.batch;
  b.seq = pc.seq;
  b.input_ids = ids.data();
  b.labels = ids.data();
  b.positions = pc.packed ? positions.data() : nullptr;
  b.segments = pc.packed ? segments.data() : nullptr;
  b.grad_scale = 1.f / float(N);
  OptimizerSettings o;
  m.train_step(b, pc.checkpointing);
  m.optimizer_step(o);

  StepPlanInput in;
  in.config = pc.cfg;
  in.format = pc.format;
  in.adapters = pc.adapters;
  in.batch = pc.batch;
  in.seq = pc.seq;
  in.checkpointing = pc.checkpointing;
  in.packed = pc.packed;
  in.threads = num_threads();
  const MemoryPlan plan = plan_training_step(in);

  mem_reset_peaks();
  const MemStats before = mem_stats();
  m.train_step(b, pc.checkpointing);
  m.optimizer_step(o);
  const MemStats after = mem_stats();

  const std::string name = pc.name;
  for (int c = 0; c < kMemCategoryCount; ++c) {
    const char* cat = mem_category_name(MemCategory(c));
    // Resident bytes: what the model holds between steps.
    if (c <= int(MemCategory::Optimizer))
      CHECK_MSG(before.current[c] == plan.resident.bytes[c],
                name + " resident " + cat + ": measured " + std::to_string(before.current[c]) +
                    ", planned " + std::to_string(plan.resident.bytes[c]));
    const int64_t measured = after.peak[c] - before.current[c];
    const int64_t planned = plan.peak.bytes[c] - plan.resident.bytes[c];
    CHECK_MSG(measured == planned, name + " peak " + cat + ": measured +" + std::to_string(measured) +
                                       ", planned +" + std::to_string(planned));
  }
  const int64_t measured_total = after.total_peak - before.total_current;
  const int64_t planned_total = plan.peak.total - plan.resident.total;
  CHECK_MSG(measured_total == planned_total, name + " total peak: measured +" +
                                                 std::to_string(measured_total) + ", planned +" +
                                                 std::to_string(planned_total) + " (" +
                                                 plan.peak_point + ")");
  CHECK_MSG(after.total_current == before.total_current, name + ": the step leaves nothing behind");
  // The breakdown at the peak sums to the peak.
  int64_t sum = 0;
  for (int c = 0; c < kMemCategoryCount; ++c) sum += plan.at_peak.bytes[c];
  CHECK(sum == plan.peak.total);
}

constexpr uint32_t kAll = (1u << kProjCount) - 1;
constexpr uint32_t kQV = (1u << kQ) | (1u << kV);

}  // namespace

TEST(memory_plan_matches_the_allocator_with_one_thread) {
  const int threads = num_threads();
  set_num_threads(1);
  ModelConfig qwen3 = shape(300, 64, 160, 2, 4, 2, 32);
  qwen3.qk_norm = true;
  ModelConfig qwen2 = shape(256, 96, 192, 2, 6, 2, 16);
  qwen2.qkv_bias = true;
  ModelConfig tied = shape(512, 128, 256, 3, 4, 4, 32);
  tied.tied = true;
  const std::vector<PlanCase> cases = {
      {"llama bf16 checkpointed", shape(320, 128, 256, 2, 4, 2, 32), BaseFormat::BF16,
       {{8, kAll}}, 2, 48, true, false},
      {"llama nf4 no checkpointing", shape(320, 128, 256, 2, 4, 2, 32), BaseFormat::NF4,
       {{16, kQV}}, 1, 64, false, false},
      {"qwen3 f32 two adapters", qwen3, BaseFormat::F32, {{4, kAll}, {12, kQV}}, 2, 20, true,
       false},
      {"qwen2 packed", qwen2, BaseFormat::BF16, {{8, kAll}}, 2, 32, true, true},
      {"tied, few tokens (skinny products)", tied, BaseFormat::NF4, {{4, kAll}}, 2, 3, false,
       false},
      {"long loss (several logit chunks)", shape(40000, 64, 128, 1, 2, 1, 32), BaseFormat::BF16,
       {{8, kQV}}, 2, 160, true, false},
  };
  for (const PlanCase& pc : cases) check_case(pc);
  set_num_threads(threads);
}

TEST(memory_plan_threads_change_only_the_workspace) {
  StepPlanInput in;
  in.config = shape(4096, 256, 512, 2, 8, 4, 32);
  in.adapters = {{8, kAll}};
  in.batch = 2;
  in.seq = 128;
  in.threads = 1;
  const MemoryPlan one = plan_training_step(in);
  in.threads = 4;
  const MemoryPlan four = plan_training_step(in);
  const int w = int(MemCategory::Workspace);
  for (int c = 0; c < w; ++c) CHECK(four.peak.bytes[c] == one.peak.bytes[c]);
  // Checkpointing keeps one layer's activations instead of every layer's.
  in.checkpointing = false;
  const MemoryPlan kept = plan_training_step(in);
  const int a = int(MemCategory::Activations);
  CHECK(kept.peak.bytes[a] > four.peak.bytes[a]);
  CHECK(std::string(step_phase_name(four.peak_phase)) != "optimizer");
}
