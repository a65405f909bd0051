// What the CPU and CUDA implementations of the augmentation ops share: argument checks
// (shapes, dtypes and devices only: no reads of tensor values, so no device sync) and outputs.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace igm_fast {

// start, length, angles, shear, joint_mask, noise_key: see the schema in augment.cpp.
using SampleParamsTensors = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

inline void check_sample_params_args(const at::Tensor& valid_len, const at::Tensor& indices, double p_min,
                                     double p_max, double theta, double shear, double joint_mask_p,
                                     int64_t num_joints, int64_t min_crop) {
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
  TORCH_CHECK(theta >= 0.0 && shear >= 0.0, "augment_sample_params: theta and shear must be >= 0, got theta=",
              theta, " shear=", shear);
  TORCH_CHECK(0.0 <= joint_mask_p && joint_mask_p <= 1.0 && num_joints >= 0,
              "augment_sample_params: need joint_mask_p in [0, 1] and num_joints >= 0, got ", joint_mask_p, ", ",
              num_joints);
  TORCH_CHECK(min_crop >= 1, "augment_sample_params: min_crop must be >= 1, got ", min_crop);
}

// Every sample needs a valid frame, on every device. On CUDA this reads back one reduction (a
// sync), so that a bad length raises the CPU path's error instead of being clamped in the kernel.
inline void check_valid_lengths_on_device(const at::Tensor& valid_len) {
  if (valid_len.numel() == 0) return;
  const int64_t i = valid_len.argmin().item<int64_t>();
  const int64_t v = valid_len[i].item<int64_t>();
  TORCH_CHECK(v >= 1, "augment_sample_params: valid_len[", i, "] = ", v,
              "; every sample needs at least one valid frame");
}

// Uninitialised outputs for n samples, on valid_len's device.
inline SampleParamsTensors empty_sample_params(const at::Tensor& valid_len, int64_t num_joints) {
  const auto n = valid_len.size(0);
  const auto opts = valid_len.options();
  return {at::empty({n}, opts), at::empty({n}, opts), at::empty({n, 3}, opts.dtype(at::kFloat)),
          at::empty({n, 6}, opts.dtype(at::kFloat)), at::empty({n, num_joints}, opts.dtype(at::kBool)),
          at::empty({n}, opts)};
}

inline void check_apply_args(const at::Tensor& x, const at::Tensor& start, const at::Tensor& length,
                             const at::Tensor& angles, const std::optional<at::Tensor>& shear,
                             const std::optional<at::Tensor>& joint_mask, const std::optional<at::Tensor>& noise_key,
                             int64_t out_frames) {
  TORCH_CHECK(x.dim() == 5 && x.size(1) == 3, "augment_apply: x must be (N, 3, T, V, M), got ", x.sizes());
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
              "augment_apply: x must be float32, bfloat16 or float16, got ", dtype);
  TORCH_CHECK(out_frames >= 1, "augment_apply: out_frames must be >= 1, got ", out_frames);
  const auto n = x.size(0);
  auto check_param = [&](const at::Tensor& t, const char* name, at::IntArrayRef shape, at::ScalarType type) {
    TORCH_CHECK(t.sizes() == shape && t.scalar_type() == type, "augment_apply: ", name, " must be ", type,
                " of shape ", shape, " for x of shape ", x.sizes(), ", got ", t.scalar_type(), " ", t.sizes());
    TORCH_CHECK(t.device() == x.device(), "augment_apply: x is on ", x.device(), " but ", name, " on ", t.device());
  };
  check_param(start, "start", {n}, at::kLong);
  check_param(length, "length", {n}, at::kLong);
  check_param(angles, "angles", {n, 3}, at::kFloat);
  if (shear) check_param(*shear, "shear", {n, 6}, at::kFloat);
  if (joint_mask) check_param(*joint_mask, "joint_mask", {n, x.size(3)}, at::kBool);
  if (noise_key) check_param(*noise_key, "noise_key", {n}, at::kLong);
}

}  // namespace igm_fast
