// Launchers of the augmentation kernels (augment_cuda.cu). Plain C++ types only, so the
// torch-facing side (augment_cuda_ops.cpp) and the kernel can be compiled separately:
// the kernel needs no torch headers, the binding no CUDA compiler.
#pragma once

#include <stdint.h>

namespace igm_fast_cuda {

enum class DType { kFloat32, kBFloat16, kFloat16 };

// Outputs of augment_sample_params: start, length (n), angles (n, 3), shear (n, 6),
// joint_mask (n, num_joints), noise_key (n).
struct SampleParamsOut {
  int64_t* start;
  int64_t* length;
  float* angles;
  float* shear;
  bool* joint_mask;
  int64_t* noise_key;
};

// Each returns nullptr on success, else the CUDA error string of the launch. `stream` is a cudaStream_t.
const char* launch_sample_params(const int64_t* valid_len, const int64_t* indices, int64_t n, int64_t seed,
                                 int64_t epoch, bool center, double p_min, double p_max, double theta, double shear,
                                 double joint_mask_p, int64_t num_joints, int64_t min_crop, SampleParamsOut out,
                                 void* stream);

// Parameters of augment_apply; shear, joint_mask and noise_key may be null (extra not used).
struct ApplyParams {
  const int64_t* start;
  const int64_t* length;
  const float* angles;
  const float* shear;
  const bool* joint_mask;
  const int64_t* noise_key;
  float noise_sigma;
};

// x (n, 3, frames, joints, bodies) contiguous -> out (n, 3, out_frames, joints, bodies).
const char* launch_apply(DType dtype, const void* x, int64_t n, int64_t frames, int64_t joints, int64_t bodies,
                         ApplyParams params, int64_t out_frames, void* out, void* stream);

}  // namespace igm_fast_cuda
