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

SampleParamsTensors augment_sample_params_cuda(const at::Tensor& valid_len, const at::Tensor& indices, int64_t seed,
                                               int64_t epoch, bool center, double p_min, double p_max, double theta,
                                               double shear, double joint_mask_p, int64_t num_joints, int64_t min_crop) {
  check_sample_params_args(valid_len, indices, p_min, p_max, theta, shear, joint_mask_p, num_joints, min_crop);
  const c10::cuda::CUDAGuard guard(valid_len.device());
  check_valid_lengths_on_device(valid_len);
  auto valid = valid_len.contiguous();
  auto index = indices.contiguous();
  auto out = empty_sample_params(valid_len, num_joints);
  const igm_fast_cuda::SampleParamsOut out_p = {
      std::get<0>(out).data_ptr<int64_t>(), std::get<1>(out).data_ptr<int64_t>(), std::get<2>(out).data_ptr<float>(),
      std::get<3>(out).data_ptr<float>(),   std::get<4>(out).data_ptr<bool>(),    std::get<5>(out).data_ptr<int64_t>()};
  check_launch(igm_fast_cuda::launch_sample_params(valid.data_ptr<int64_t>(), index.data_ptr<int64_t>(),
                                                   valid.size(0), seed, epoch, center, p_min, p_max, theta, shear,
                                                   joint_mask_p, num_joints, min_crop, out_p,
                                                   c10::cuda::getCurrentCUDAStream().stream()),
               "augment_sample_params");
  return out;
}

at::Tensor augment_apply_cuda(const at::Tensor& x, const at::Tensor& start, const at::Tensor& length,
                              const at::Tensor& angles, const std::optional<at::Tensor>& shear,
                              const std::optional<at::Tensor>& joint_mask, const std::optional<at::Tensor>& noise_key,
                              double noise_sigma, int64_t out_frames) {
  check_apply_args(x, start, length, angles, shear, joint_mask, noise_key, out_frames);
  const c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous();
  auto start_c = start.contiguous(), length_c = length.contiguous(), angles_c = angles.contiguous();
  auto shear_c = shear ? shear->contiguous() : at::Tensor();
  auto mask_c = joint_mask ? joint_mask->contiguous() : at::Tensor();
  auto noise_key_c = noise_key ? noise_key->contiguous() : at::Tensor();
  const igm_fast_cuda::ApplyParams params = {start_c.data_ptr<int64_t>(),
                                             length_c.data_ptr<int64_t>(),
                                             angles_c.data_ptr<float>(),
                                             shear ? shear_c.data_ptr<float>() : nullptr,
                                             joint_mask ? mask_c.data_ptr<bool>() : nullptr,
                                             noise_key ? noise_key_c.data_ptr<int64_t>() : nullptr,
                                             static_cast<float>(noise_sigma)};
  auto out = at::empty({x.size(0), 3, out_frames, x.size(3), x.size(4)}, x.options());
  const auto dtype = x.scalar_type() == at::kFloat      ? igm_fast_cuda::DType::kFloat32
                     : x.scalar_type() == at::kBFloat16 ? igm_fast_cuda::DType::kBFloat16
                                                        : igm_fast_cuda::DType::kFloat16;
  check_launch(igm_fast_cuda::launch_apply(dtype, xc.data_ptr(), x.size(0), x.size(2), x.size(3), x.size(4), params,
                                           out_frames, out.data_ptr(), c10::cuda::getCurrentCUDAStream().stream()),
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
