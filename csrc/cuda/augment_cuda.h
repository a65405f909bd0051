// Launchers of the augmentation kernels (augment_cuda.cu). Plain C++ types only, so the
// torch-facing side (augment_cuda_ops.cpp) and the kernel can be compiled separately:
// the kernel needs no torch headers, the binding no CUDA compiler.
#pragma once

#include <stdint.h>

namespace igm_fast_cuda {

enum class DType { kFloat32, kBFloat16, kFloat16 };

// Each returns nullptr on success, else the CUDA error string of the launch. `stream` is a cudaStream_t.
const char* launch_sample_params(const int64_t* valid_len, const int64_t* indices, int64_t n, int64_t seed,
                                 int64_t epoch, bool center, double p_min, double p_max, double theta,
                                 int64_t* start, int64_t* length, float* angles, void* stream);

// x (n, 3, frames, points) contiguous -> out (n, 3, out_frames, points); points = V * M.
const char* launch_apply(DType dtype, const void* x, int64_t n, int64_t frames, int64_t points,
                         const int64_t* start, const int64_t* length, const float* angles, int64_t out_frames,
                         void* out, void* stream);

}  // namespace igm_fast_cuda
