// CUDA kernels of the augmentation ops. Includes only CUDA headers and the shared math, so
// nvcc compiles it without torch (CMakeLists.txt does, as a compile check on machines whose
// torch has no CUDA headers). The torch binding is augment_cuda_ops.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../augment_math.h"
#include "augment_cuda.h"

namespace igm_fast_cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kFramesPerThread = 4;

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half(v); }

__global__ void sample_params_kernel(const int64_t* __restrict__ valid_len, const int64_t* __restrict__ indices,
                                     int64_t n, int64_t seed, int64_t epoch, bool center, double p_min,
                                     double p_max, double theta, double shear, double joint_mask_p,
                                     int64_t num_joints, int64_t min_crop, SampleParamsOut out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  // valid_len >= 1: checked by the host wrapper (check_valid_lengths_on_device), as on the CPU.
  const auto s = igm_aug::sample_params(valid_len[i], seed, epoch, indices[i], center, p_min, p_max, theta, min_crop);
  const auto e = igm_aug::sample_extras(seed, epoch, indices[i], shear);
  out.start[i] = s.start;
  out.length[i] = s.length;
  for (int k = 0; k < 3; ++k) out.angles[3 * i + k] = s.angles[k];
  for (int k = 0; k < 6; ++k) out.shear[6 * i + k] = e.shear[k];
  out.noise_key[i] = static_cast<int64_t>(e.noise_key);
  igm_aug::sample_joint_mask(seed, epoch, indices[i], num_joints, joint_mask_p, out.joint_mask + i * num_joints);
}

// One thread per (sample, group of kFramesPerThread output frames, joint*body): consecutive
// threads take consecutive joints/bodies, so a warp's loads and stores are coalesced; the
// sample's transform and the index arithmetic are amortised over the frames of the group.
template <typename T>
__global__ void apply_kernel(const T* __restrict__ x, int64_t n, int64_t frames, int64_t joints, int64_t bodies,
                             ApplyParams params, int64_t out_frames, T* __restrict__ out) {
  const int64_t points = joints * bodies;
  const int64_t groups = (out_frames + kFramesPerThread - 1) / kFramesPerThread;
  const int64_t total = n * groups * points;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = idx % points;
    const int64_t group = (idx / points) % groups;
    const int64_t i = idx / (points * groups);
    // Clamp the window into [0, frames): a bad parameter must not read out of bounds
    // (the Python wrapper validates parameters; the kernel cannot report without a sync).
    const int64_t len = min(max(params.length[i], int64_t(1)), frames);
    const int64_t s0 = min(max(params.start[i], int64_t(0)), frames - len);
    const igm_aug::SampleTransform tr = igm_aug::sample_transform(
        params.angles + 3 * i, params.shear ? params.shear + 6 * i : nullptr,
        params.noise_key ? params.noise_key + i : nullptr, params.noise_sigma);
    const bool masked = params.joint_mask != nullptr && params.joint_mask[i * joints + j / bodies];
    const T* sample = x + i * 3 * frames * points + s0 * points + j;
    T* dst = out + i * 3 * out_frames * points + j;
    const int64_t t_end = min(out_frames, (group + 1) * kFramesPerThread);
    for (int64_t t = group * kFramesPerThread; t < t_end; ++t) {
      const igm_aug::LinearTap tap = igm_aug::linear_tap(len, out_frames, t);
      float a[3], b[3], o[3];
      for (int c = 0; c < 3; ++c) {
        a[c] = load(sample + (c * frames + tap.i0) * points);
        b[c] = load(sample + (c * frames + tap.i1) * points);
      }
      igm_aug::transform_point(tr, tap, a, b, static_cast<uint64_t>(t * points + j), masked, o);
      for (int c = 0; c < 3; ++c) store(dst + (c * out_frames + t) * points, o[c]);
    }
  }
}

const char* last_error() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

template <typename T>
const char* launch_apply_typed(const void* x, int64_t n, int64_t frames, int64_t joints, int64_t bodies,
                               ApplyParams params, int64_t out_frames, void* out, cudaStream_t stream) {
  const int64_t total = n * ((out_frames + kFramesPerThread - 1) / kFramesPerThread) * joints * bodies;
  if (total == 0) return nullptr;
  // Enough blocks to fill any current GPU; the grid-stride loop covers the rest.
  const int64_t blocks = min((total + kThreads - 1) / kThreads, int64_t(1) << 20);
  apply_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const T*>(x), n, frames, joints, bodies, params, out_frames, static_cast<T*>(out));
  return last_error();
}

}  // namespace

const char* launch_sample_params(const int64_t* valid_len, const int64_t* indices, int64_t n, int64_t seed,
                                 int64_t epoch, bool center, double p_min, double p_max, double theta, double shear,
                                 double joint_mask_p, int64_t num_joints, int64_t min_crop, SampleParamsOut out,
                                 void* stream) {
  if (n == 0) return nullptr;
  const unsigned blocks = static_cast<unsigned>((n + kThreads - 1) / kThreads);
  sample_params_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      valid_len, indices, n, seed, epoch, center, p_min, p_max, theta, shear, joint_mask_p, num_joints, min_crop, out);
  return last_error();
}

const char* launch_apply(DType dtype, const void* x, int64_t n, int64_t frames, int64_t joints, int64_t bodies,
                         ApplyParams params, int64_t out_frames, void* out, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFloat32:
      return launch_apply_typed<float>(x, n, frames, joints, bodies, params, out_frames, out, s);
    case DType::kBFloat16:
      return launch_apply_typed<__nv_bfloat16>(x, n, frames, joints, bodies, params, out_frames, out, s);
    default:
      return launch_apply_typed<__half>(x, n, frames, joints, bodies, params, out_frames, out, s);
  }
}

}  // namespace igm_fast_cuda
