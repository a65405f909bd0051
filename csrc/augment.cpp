// The augmentation ops: schemas (TORCH_LIBRARY) and the CPU implementations.
// The math lives in augment_math.h, shared with the CUDA kernel (cuda/augment_cuda.cu).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "augment_math.h"
#include "augment_ops_common.h"

namespace igm_fast {

namespace {

SampleParamsTensors augment_sample_params_cpu(const at::Tensor& valid_len, const at::Tensor& indices, int64_t seed,
                                              int64_t epoch, bool center, double p_min, double p_max, double theta,
                                              double shear, double joint_mask_p, int64_t num_joints, int64_t min_crop) {
  check_sample_params_args(valid_len, indices, p_min, p_max, theta, shear, joint_mask_p, num_joints, min_crop);
  auto valid = valid_len.contiguous();
  auto index = indices.contiguous();
  const int64_t* valid_p = valid.data_ptr<int64_t>();
  const int64_t* index_p = index.data_ptr<int64_t>();
  for (int64_t i = 0; i < valid.size(0); ++i) {
    TORCH_CHECK(valid_p[i] >= 1, "augment_sample_params: valid_len[", i, "] = ", valid_p[i],
                "; every sample needs at least one valid frame");
  }
  auto out = empty_sample_params(valid_len, num_joints);
  int64_t* start_p = std::get<0>(out).data_ptr<int64_t>();
  int64_t* length_p = std::get<1>(out).data_ptr<int64_t>();
  float* angles_p = std::get<2>(out).data_ptr<float>();
  float* shear_p = std::get<3>(out).data_ptr<float>();
  bool* mask_p = std::get<4>(out).data_ptr<bool>();
  int64_t* noise_key_p = std::get<5>(out).data_ptr<int64_t>();
  for (int64_t i = 0; i < valid.size(0); ++i) {
    const auto s = igm_aug::sample_params(valid_p[i], seed, epoch, index_p[i], center, p_min, p_max, theta, min_crop);
    const auto e = igm_aug::sample_extras(seed, epoch, index_p[i], shear);
    start_p[i] = s.start;
    length_p[i] = s.length;
    for (int k = 0; k < 3; ++k) angles_p[3 * i + k] = s.angles[k];
    for (int k = 0; k < 6; ++k) shear_p[6 * i + k] = e.shear[k];
    noise_key_p[i] = static_cast<int64_t>(e.noise_key);
    igm_aug::sample_joint_mask(seed, epoch, index_p[i], num_joints, joint_mask_p, mask_p + i * num_joints);
  }
  return out;
}

template <typename scalar_t>
void augment_apply_cpu_kernel(const at::Tensor& x, const int64_t* start_p, const int64_t* length_p,
                              const float* angles_p, const float* shear_p, const bool* mask_p,
                              const int64_t* noise_key_p, float noise_sigma, at::Tensor& out) {
  const int64_t n = x.size(0), frames = x.size(2), joints = x.size(3), bodies = x.size(4);
  const int64_t points = joints * bodies, out_frames = out.size(2);
  const scalar_t* x_p = x.data_ptr<scalar_t>();
  scalar_t* out_p = out.data_ptr<scalar_t>();
  // Each sample's transform once (sin/cos), not once per output frame.
  std::vector<igm_aug::SampleTransform> transforms(n);
  for (int64_t i = 0; i < n; ++i) {
    transforms[i] = igm_aug::sample_transform(angles_p + 3 * i, shear_p ? shear_p + 6 * i : nullptr,
                                              noise_key_p ? noise_key_p + i : nullptr, noise_sigma);
  }
  // One task = one output frame of one sample (all its joints and bodies, 3 coordinates).
  at::parallel_for(0, n * out_frames, 16, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task / out_frames, t = task % out_frames;
      const igm_aug::SampleTransform& tr = transforms[i];
      const igm_aug::LinearTap tap = igm_aug::linear_tap(length_p[i], out_frames, t);
      const scalar_t* sample = x_p + i * 3 * frames * points;
      const scalar_t* frame0 = sample + (start_p[i] + tap.i0) * points;
      const scalar_t* frame1 = sample + (start_p[i] + tap.i1) * points;
      scalar_t* dst = out_p + (i * 3 * out_frames + t) * points;
      for (int64_t j = 0; j < points; ++j) {
        float a[3], b[3], o[3];
        for (int c = 0; c < 3; ++c) {
          a[c] = static_cast<float>(frame0[c * frames * points + j]);
          b[c] = static_cast<float>(frame1[c * frames * points + j]);
        }
        const bool masked = mask_p != nullptr && mask_p[i * joints + j / bodies];
        igm_aug::transform_point(tr, tap, a, b, static_cast<uint64_t>(t * points + j), masked, o);
        for (int c = 0; c < 3; ++c) dst[c * out_frames * points + j] = static_cast<scalar_t>(o[c]);
      }
    }
  });
}

at::Tensor augment_apply_cpu(const at::Tensor& x, const at::Tensor& start, const at::Tensor& length,
                             const at::Tensor& angles, const std::optional<at::Tensor>& shear,
                             const std::optional<at::Tensor>& joint_mask, const std::optional<at::Tensor>& noise_key,
                             double noise_sigma, int64_t out_frames) {
  check_apply_args(x, start, length, angles, shear, joint_mask, noise_key, out_frames);
  auto xc = x.contiguous();
  auto start_c = start.contiguous(), length_c = length.contiguous(), angles_c = angles.contiguous();
  auto shear_c = shear ? shear->contiguous() : at::Tensor();
  auto mask_c = joint_mask ? joint_mask->contiguous() : at::Tensor();
  auto noise_key_c = noise_key ? noise_key->contiguous() : at::Tensor();
  // Crop windows index x directly: validate them here, where reading them is free.
  const int64_t frames = x.size(2);
  const int64_t* s = start_c.data_ptr<int64_t>();
  const int64_t* l = length_c.data_ptr<int64_t>();
  for (int64_t i = 0; i < x.size(0); ++i) {
    TORCH_CHECK(l[i] >= 1 && l[i] <= frames && s[i] >= 0 && s[i] + l[i] <= frames,
                "augment_apply: sample ", i, " has crop [start=", s[i], ", length=", l[i],
                "], which must satisfy length >= 1 and 0 <= start, start + length <= T = ", frames);
  }
  auto out = at::empty({x.size(0), 3, out_frames, x.size(3), x.size(4)}, x.options());
  const float* shear_p = shear ? shear_c.data_ptr<float>() : nullptr;
  const bool* mask_p = joint_mask ? mask_c.data_ptr<bool>() : nullptr;
  const int64_t* noise_key_p = noise_key ? noise_key_c.data_ptr<int64_t>() : nullptr;
  const float* angles_p = angles_c.data_ptr<float>();
  const auto sigma = static_cast<float>(noise_sigma);
  switch (x.scalar_type()) {  // check_apply_args admits exactly these three
    case at::kFloat:
      augment_apply_cpu_kernel<float>(xc, s, l, angles_p, shear_p, mask_p, noise_key_p, sigma, out);
      break;
    case at::kBFloat16:
      augment_apply_cpu_kernel<c10::BFloat16>(xc, s, l, angles_p, shear_p, mask_p, noise_key_p, sigma, out);
      break;
    default:
      augment_apply_cpu_kernel<c10::Half>(xc, s, l, angles_p, shear_p, mask_p, noise_key_p, sigma, out);
      break;
  }
  return out;
}

}  // namespace

TORCH_LIBRARY(igm_fast, m) {
  // Per-sample parameters from Philox keyed by (seed, epoch, indices[i]); shear (N, 6) and
  // joint_mask (N, num_joints) are drawn with amplitude `shear` and probability `joint_mask_p`
  // (0: off), noise_key (N,) keys each sample's noise stream in augment_apply. Train crops keep at
  // least min_crop frames (MAMP: 64) or the whole sequence when it is shorter.
  m.def("augment_sample_params(Tensor valid_len, Tensor indices, int seed, int epoch, bool center, "
        "float p_min, float p_max, float theta, float shear, float joint_mask_p, int num_joints, "
        "int min_crop=64) -> "
        "(Tensor start, Tensor length, Tensor angles, Tensor shear, Tensor joint_mask, Tensor noise_key)");
  // Crop, resize to out_frames, shear (if given), rotate, add noise (if noise_key given and
  // noise_sigma != 0), zero masked joints (if joint_mask given).
  m.def("augment_apply(Tensor x, Tensor start, Tensor length, Tensor angles, Tensor? shear, "
        "Tensor? joint_mask, Tensor? noise_key, float noise_sigma, int out_frames) -> Tensor");
}

TORCH_LIBRARY_IMPL(igm_fast, CPU, m) {
  m.impl("augment_sample_params", &augment_sample_params_cpu);
  m.impl("augment_apply", &augment_apply_cpu);
}

}  // namespace igm_fast
