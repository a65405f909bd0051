// What the CPU and CUDA implementations of the augmentation ops share: argument checks
// (shapes, dtypes and devices only: no reads of tensor values, so no device sync) and outputs.
#pragma once

#include <ATen/ATen.h>

namespace igm_fast {

inline void check_sample_params_args(const at::Tensor& valid_len, const at::Tensor& indices, double p_min,
                                     double p_max, double theta) {
  TORCH_CHECK(valid_len.dim() == 1 && valid_len.scalar_type() == at::kLong,
              "augment_sample_params: valid_len must be int64 of shape (N,), got ", valid_len.scalar_type(), " ",
              valid_len.sizes());
  TORCH_CHECK(indices.dim() == 1 && indices.scalar_type() == at::kLong && indices.size(0) == valid_len.size(0),
              "augment_sample_params: indices must be int64 of shape (", valid_len.size(0), ",), got ",
              indices.scalar_type(), " ", indices.sizes());
  TORCH_CHECK(indices.device() == valid_len.device(), "augment_sample_params: valid_len is on ",
              valid_len.device(), " but indices on ", indices.device());
  TORCH_CHECK(0.0 < p_min && p_min <= p_max && p_max <= 1.0,
              "augment_sample_params: need 0 < p_min <= p_max <= 1, got p_min=", p_min, " p_max=", p_max);
  TORCH_CHECK(theta >= 0.0, "augment_sample_params: theta must be >= 0, got ", theta);
}

inline void check_apply_args(const at::Tensor& x, const at::Tensor& start, const at::Tensor& length,
                             const at::Tensor& angles, int64_t out_frames) {
  TORCH_CHECK(x.dim() == 5 && x.size(1) == 3, "augment_apply: x must be (N, 3, T, V, M), got ", x.sizes());
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
              "augment_apply: x must be float32, bfloat16 or float16, got ", dtype);
  TORCH_CHECK(out_frames >= 1, "augment_apply: out_frames must be >= 1, got ", out_frames);
  const auto n = x.size(0);
  for (const auto* t : {&start, &length}) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == n && t->scalar_type() == at::kLong,
                "augment_apply: start and length must be int64 of shape (", n, ",), got ", t->scalar_type(), " ",
                t->sizes());
  }
  TORCH_CHECK(angles.dim() == 2 && angles.size(0) == n && angles.size(1) == 3 && angles.scalar_type() == at::kFloat,
              "augment_apply: angles must be float32 of shape (", n, ", 3), got ", angles.scalar_type(), " ",
              angles.sizes());
  for (const auto* t : {&start, &length, &angles}) {
    TORCH_CHECK(t->device() == x.device(), "augment_apply: x is on ", x.device(), " but a parameter is on ",
                t->device());
  }
}

// Uninitialised (start, length, angles) for n samples, on valid_len's device.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> empty_sample_params(const at::Tensor& valid_len) {
  const auto n = valid_len.size(0);
  return {at::empty({n}, valid_len.options()), at::empty({n}, valid_len.options()),
          at::empty({n, 3}, valid_len.options().dtype(at::kFloat))};
}

}  // namespace igm_fast
