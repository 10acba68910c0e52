// Transformer building blocks: forward and hand-written backward of each op,
// fp32 throughout. Each has a *_reference scalar twin that is the
// specification; tests compare them on odd sizes and check every backward
// against finite differences. Layouts are row-major; a "token row" is one
// position of one sequence.
//
// Dimension legend:
//   B  batch (sequences)        T  tokens per sequence (query length)
//   S  key/value length         H  query heads      KV key/value heads
//   Hd head dimension           D  hidden size      V  vocabulary size
#pragma once
#include <cstdint>

#include "../common/dtype.h"

namespace ls {

// ---- RMSNorm ---------------------------------------------------------------
// y[r,:] = w ⊙ x[r,:] · rstd[r],  rstd[r] = 1/sqrt(mean(x[r,:]²) + eps)
// x, y [rows, dim]; w [dim]; rstd [rows] (saved for backward). y may alias x.
void rmsnorm_forward(const float* x, const float* w, int64_t rows, int64_t dim, float eps,
                     float* y, float* rstd);
void rmsnorm_forward_reference(const float* x, const float* w, int64_t rows, int64_t dim,
                               float eps, float* y, float* rstd);
// dx[rows, dim] (= or +=) ∂L/∂x given dy; w is frozen (no weight gradient).
void rmsnorm_backward(const float* x, const float* w, const float* rstd, const float* dy,
                      int64_t rows, int64_t dim, float* dx, bool accumulate);
void rmsnorm_backward_reference(const float* x, const float* w, const float* rstd,
                                const float* dy, int64_t rows, int64_t dim, float* dx,
                                bool accumulate);

// ---- Rotary position embedding (Hugging Face "rotate_half" layout) ---------
// For each token row r and head h, the pairs (i, i + Hd/2), i < Hd/2, are
// rotated by angle positions[r] * inv_freq[i]:
//   x'[i]      = x[i] cos - x[i+Hd/2] sin
//   x'[i+Hd/2] = x[i+Hd/2] cos + x[i] sin
// The angle is computed as float(position) * inv_freq[i] in fp32 and its
// cos/sin in double rounded to fp32 (as transformers does). In place on
// x [rows, heads*Hd]. backward rotates by the negative angle (in place on dx).
void rope_forward(float* x, int64_t rows, int64_t heads, int64_t head_dim,
                  const int32_t* positions, const float* inv_freq);
void rope_forward_reference(float* x, int64_t rows, int64_t heads, int64_t head_dim,
                            const int32_t* positions, const float* inv_freq);
void rope_backward(float* dx, int64_t rows, int64_t heads, int64_t head_dim,
                   const int32_t* positions, const float* inv_freq);

// ---- Causal grouped-query attention ----------------------------------------
// q   [B, T, H*Hd]  (row stride q_stride floats)
// k,v [B, S, KV*Hd] (row stride kv_stride floats; batch stride kv_batch_stride
//                    floats, so a KV cache with spare capacity can be passed)
// Query t of a sequence sits at position q_offset + t of its key sequence and
// sees keys s <= q_offset + t. If segments is given ([B, T], only with
// q_offset == 0 and S == T), it also sees only keys of its own segment
// (packed examples cannot attend to each other). Head h uses kv head
// h / (H / KV). scale is usually 1/sqrt(Hd).
// out [B, T, H*Hd] (row stride out_stride); lse [B, H, T] log-sum-exp of the
// scaled scores of each query (saved for backward).
struct AttentionShape {
  int64_t batch = 1, q_len = 1, kv_len = 1, heads = 1, kv_heads = 1, head_dim = 1;
  int64_t q_offset = 0;
  int64_t q_stride = 0, kv_stride = 0, kv_batch_stride = 0, out_stride = 0;
  float scale = 1.f;
};
void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v,
                       const int32_t* segments, float* out, float* lse);
void attention_forward_reference(const AttentionShape& s, const float* q, const float* k,
                                 const float* v, const int32_t* segments, float* out,
                                 float* lse);
// Backward (training: q_offset == 0, S == T, contiguous strides as forward).
// dq [B,T,H*Hd], dk/dv [B,S,KV*Hd] are overwritten (not accumulated).
void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v,
                        const int32_t* segments, const float* out, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv);
void attention_backward_reference(const AttentionShape& s, const float* q, const float* k,
                                  const float* v, const int32_t* segments, const float* out,
                                  const float* lse, const float* dout, float* dq, float* dk,
                                  float* dv);

// ---- SwiGLU ------------------------------------------------------------------
// a = silu(g) ⊙ u over n elements; silu(x) = x / (1 + e^-x).
void swiglu_forward(const float* g, const float* u, int64_t n, float* a);
void swiglu_forward_reference(const float* g, const float* u, int64_t n, float* a);
// dg = da ⊙ u ⊙ silu'(g), du = da ⊙ silu(g) (overwritten).
void swiglu_backward(const float* g, const float* u, const float* da, int64_t n, float* dg,
                     float* du);
void swiglu_backward_reference(const float* g, const float* u, const float* da, int64_t n,
                               float* dg, float* du);

// ---- Cross-entropy over a chunk of logits ---------------------------------
// logits [rows, V]; targets [rows] (-100: ignored row). Returns the SUM of
// -log softmax(logits[r])[targets[r]] over non-ignored rows (double). If
// want_grad, logits is overwritten in place by grad_scale * (softmax - onehot)
// for non-ignored rows and by 0 for ignored rows.
double cross_entropy(float* logits, const int32_t* targets, int64_t rows, int64_t vocab,
                     float grad_scale, bool want_grad);
double cross_entropy_reference(float* logits, const int32_t* targets, int64_t rows,
                               int64_t vocab, float grad_scale, bool want_grad);

// ---- Embedding lookup ------------------------------------------------------
// out[r, :] = table[ids[r], :] as fp32; table [vocab, dim] in F32 or BF16.
void embedding_forward(DType table_dtype, const void* table, int64_t dim, const int32_t* ids,
                       int64_t rows, float* out);

// ---- AdamW (torch.optim.AdamW semantics) ----------------------------------
// With g' = grad_scale * g (grad_scale carries global-norm clipping):
//   p  ← p · (1 − lr·wd)
//   m  ← β1 m + (1−β1) g' ;  v ← β2 v + (1−β2) g'²
//   p  ← p − (lr / (1−β1^step)) · m / (sqrt(v) / sqrt(1−β2^step) + eps)
// step is 1-based.
struct AdamWParams {
  float lr = 1e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.f;
  int64_t step = 1;
  float grad_scale = 1.f;
};
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const AdamWParams& a);
void adamw_step_reference(float* p, const float* g, float* m, float* v, int64_t n,
                          const AdamWParams& a);

// Sum of squares (double accumulation), for global-norm gradient clipping.
double sum_squares(const float* x, int64_t n);

// ---- Workspace of the ops -------------------------------------------------
// Peak Workspace bytes each op allocates while it runs on a pool of `threads`
// threads (the ops size their buffers with the same layout functions); the
// memory plan (model/memory_plan.h) adds them at the points they run.
// position_span = max - min position of the rows (the rows of one sequence
// when positions restart per sequence); segments = packed examples.
int64_t rope_workspace_bytes(int64_t rows, int64_t position_span, int64_t head_dim, int threads);
int64_t attention_forward_workspace_bytes(const AttentionShape& s, bool segments, int threads);
int64_t attention_backward_workspace_bytes(const AttentionShape& s, bool segments, int threads);
int64_t cross_entropy_workspace_bytes(int64_t rows);
int64_t sum_squares_workspace_bytes(int64_t n);

}  // namespace ls
