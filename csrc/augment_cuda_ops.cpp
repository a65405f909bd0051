// CUDA implementations of the augmentation ops: argument checks, output allocation and the
// current stream, then the launchers of cuda/augment_cuda.cu. Compiled only in CUDA builds.
#ifdef IGM_WITH_CUDA

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "augment_ops_common.h"
#include "cuda/augment_cuda.h"

namespace igm_fast {

namespace {

void check_launch(const char* error, const char* op) {
  TORCH_CHECK(error == nullptr, op, ": CUDA launch failed: ", error);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> augment_sample_params_cuda(
    const at::Tensor& valid_len, const at::Tensor& indices, int64_t seed, int64_t epoch, bool center,
    double p_min, double p_max, double theta) {
  check_sample_params_args(valid_len, indices, p_min, p_max, theta);
  const c10::cuda::CUDAGuard guard(valid_len.device());
  const auto n = valid_len.size(0);
  auto valid = valid_len.contiguous();
  auto index = indices.contiguous();
  auto [start, length, angles] = empty_sample_params(valid_len);
  check_launch(igm_fast_cuda::launch_sample_params(
                   valid.data_ptr<int64_t>(), index.data_ptr<int64_t>(), n, seed, epoch, center, p_min, p_max,
                   theta, start.data_ptr<int64_t>(), length.data_ptr<int64_t>(), angles.data_ptr<float>(),
                   c10::cuda::getCurrentCUDAStream().stream()),
               "augment_sample_params");
  return {start, length, angles};
}

at::Tensor augment_apply_cuda(const at::Tensor& x, const at::Tensor& start, const at::Tensor& length,
                              const at::Tensor& angles, int64_t out_frames) {
  check_apply_args(x, start, length, angles, out_frames);
  const c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous();
  auto start_c = start.contiguous(), length_c = length.contiguous(), angles_c = angles.contiguous();
  auto out = at::empty({x.size(0), 3, out_frames, x.size(3), x.size(4)}, x.options());
  const auto dtype = x.scalar_type() == at::kFloat      ? igm_fast_cuda::DType::kFloat32
                     : x.scalar_type() == at::kBFloat16 ? igm_fast_cuda::DType::kBFloat16
                                                        : igm_fast_cuda::DType::kFloat16;
  check_launch(igm_fast_cuda::launch_apply(dtype, xc.data_ptr(), x.size(0), x.size(2), x.size(3) * x.size(4),
                                           start_c.data_ptr<int64_t>(), length_c.data_ptr<int64_t>(),
                                           angles_c.data_ptr<float>(), out_frames, out.data_ptr(),
                                           c10::cuda::getCurrentCUDAStream().stream()),
               "augment_apply");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(igm_fast, CUDA, m) {
  m.impl("augment_sample_params", &augment_sample_params_cuda);
  m.impl("augment_apply", &augment_apply_cuda);
}

}  // namespace igm_fast

#endif  // IGM_WITH_CUDA
