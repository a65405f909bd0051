// The augmentation ops: schemas (TORCH_LIBRARY) and the CPU implementations.
// The math lives in augment_math.h, shared with the CUDA kernel (cuda/augment_cuda.cu).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "augment_ops_common.h"
#include "augment_math.h"

namespace igm_fast {

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> augment_sample_params_cpu(
    const at::Tensor& valid_len, const at::Tensor& indices, int64_t seed, int64_t epoch, bool center,
    double p_min, double p_max, double theta) {
  check_sample_params_args(valid_len, indices, p_min, p_max, theta);
  const auto n = valid_len.size(0);
  auto valid = valid_len.contiguous();
  auto index = indices.contiguous();
  auto [start, length, angles] = empty_sample_params(valid_len);
  const int64_t* valid_p = valid.data_ptr<int64_t>();
  const int64_t* index_p = index.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(valid_p[i] >= 1, "augment_sample_params: valid_len[", i, "] = ", valid_p[i],
                "; every sample needs at least one valid frame");
  }
  int64_t* start_p = start.data_ptr<int64_t>();
  int64_t* length_p = length.data_ptr<int64_t>();
  float* angles_p = angles.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    const auto s = igm_aug::sample_params(valid_p[i], seed, epoch, index_p[i], center, p_min, p_max, theta);
    start_p[i] = s.start;
    length_p[i] = s.length;
    for (int k = 0; k < 3; ++k) angles_p[3 * i + k] = s.angles[k];
  }
  return {start, length, angles};
}

template <typename scalar_t>
void augment_apply_cpu_kernel(const at::Tensor& x, const at::Tensor& start, const at::Tensor& length,
                              const at::Tensor& angles, at::Tensor& out) {
  const int64_t n = x.size(0), frames = x.size(2), points = x.size(3) * x.size(4);
  const int64_t out_frames = out.size(2);
  const scalar_t* x_p = x.data_ptr<scalar_t>();
  scalar_t* out_p = out.data_ptr<scalar_t>();
  const int64_t* start_p = start.data_ptr<int64_t>();
  const int64_t* length_p = length.data_ptr<int64_t>();
  const float* angles_p = angles.data_ptr<float>();
  // One task = one output frame of one sample (all its joints and bodies, 3 coordinates).
  at::parallel_for(0, n * out_frames, 16, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task / out_frames, t = task % out_frames;
      const igm_aug::Mat3 r = igm_aug::rotation_matrix(angles_p[3 * i], angles_p[3 * i + 1], angles_p[3 * i + 2]);
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
        igm_aug::resize_rotate_point(r, tap, a, b, o);
        for (int c = 0; c < 3; ++c) dst[c * out_frames * points + j] = static_cast<scalar_t>(o[c]);
      }
    }
  });
}

at::Tensor augment_apply_cpu(const at::Tensor& x, const at::Tensor& start, const at::Tensor& length,
                             const at::Tensor& angles, int64_t out_frames) {
  check_apply_args(x, start, length, angles, out_frames);
  auto xc = x.contiguous();
  auto start_c = start.contiguous(), length_c = length.contiguous(), angles_c = angles.contiguous();
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
  switch (x.scalar_type()) {  // check_apply_args admits exactly these three
    case at::kFloat: augment_apply_cpu_kernel<float>(xc, start_c, length_c, angles_c, out); break;
    case at::kBFloat16: augment_apply_cpu_kernel<c10::BFloat16>(xc, start_c, length_c, angles_c, out); break;
    default: augment_apply_cpu_kernel<c10::Half>(xc, start_c, length_c, angles_c, out); break;
  }
  return out;
}

}  // namespace

TORCH_LIBRARY(igm_fast, m) {
  m.def("augment_sample_params(Tensor valid_len, Tensor indices, int seed, int epoch, bool center, "
        "float p_min, float p_max, float theta) -> (Tensor start, Tensor length, Tensor angles)");
  m.def("augment_apply(Tensor x, Tensor start, Tensor length, Tensor angles, int out_frames) -> Tensor");
}

TORCH_LIBRARY_IMPL(igm_fast, CPU, m) {
  m.impl("augment_sample_params", &augment_sample_params_cpu);
  m.impl("augment_apply", &augment_apply_cpu);
}

}  // namespace igm_fast
