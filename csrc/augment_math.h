// Skeleton augmentation math shared by the CPU op, the CUDA kernel and the C++ unit tests.
//
// Everything here is plain arithmetic on scalars, callable from host and device code, with
// no torch or CUDA runtime dependency, so nvcc can compile the kernel without torch headers.
// Semantics (DESIGN.md section 2, MAMP's feeder):
//   crop   train: p ~ U(p_min, p_max), len = min(max(floor(L*p), min_crop), L), start ~ U{0..L-len}
//          test:  centre crop, bias = int((1-p)*L/2), frames [bias, L-bias)
//   resize linear, identical to F.interpolate(mode='linear', align_corners=False)
//   rotate R = Rz @ Ry @ Rx with MAMP's matrices, angles ~ U(-theta, theta)
// and optional extras, off by default: shear before the rotation, Gaussian coordinate noise,
// random joint masking (a masked joint is zero in every frame and body).
// Random numbers come from Philox4x32-10 keyed by the seed, with counter (sample index, epoch,
// block), so a sample's parameters depend only on (seed, epoch, index): never on batch order,
// batch split, rank or device. Words of a sample's stream: block 0 = (crop ratio, crop start,
// angle x, angle y), block 1 = (angle z, shear 0..2), block 2 = (shear 3..5, noise key low),
// block 3 word 0 = noise key high, blocks 4.. = one word per joint for the joint mask.
#pragma once

#include <stdint.h>
#include <math.h>

#if defined(__CUDACC__)
#define IGM_HD __host__ __device__ __forceinline__
#else
#define IGM_HD inline
#endif

namespace igm_aug {

// ---- Philox4x32-10 (Salmon et al., SC'11; constants from Random123) -------------------------

struct U32x4 {
  uint32_t v[4];
};

IGM_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
}

IGM_HD U32x4 philox4x32_10(U32x4 ctr, uint32_t key0, uint32_t key1) {
  const uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  const uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(kMul0, ctr.v[0], hi0, lo0);
    mulhilo32(kMul1, ctr.v[2], hi1, lo1);
    U32x4 next;
    next.v[0] = hi1 ^ ctr.v[1] ^ key0;
    next.v[1] = lo1;
    next.v[2] = hi0 ^ ctr.v[3] ^ key1;
    next.v[3] = lo0;
    ctr = next;
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return ctr;
}

// Block `block` of the random stream of one sample: 4 words.
IGM_HD U32x4 sample_random_block(int64_t seed, int64_t epoch, int64_t index, uint32_t block) {
  U32x4 ctr;
  ctr.v[0] = static_cast<uint32_t>(static_cast<uint64_t>(index));
  ctr.v[1] = static_cast<uint32_t>(static_cast<uint64_t>(index) >> 32);
  ctr.v[2] = static_cast<uint32_t>(static_cast<uint64_t>(epoch));
  ctr.v[3] = block;
  const uint64_t key = static_cast<uint64_t>(seed);
  return philox4x32_10(ctr, static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32));
}

// Uniform in [0, 1) with 32 random bits (exact in double).
IGM_HD double uniform01(uint32_t bits) { return static_cast<double>(bits) * 2.3283064365386963e-10; }

// Uniform integer in [0, n), n >= 1: Lemire's multiply-shift, integer-only so host and device agree.
IGM_HD int64_t uniform_below(uint32_t bits, int64_t n) {
  return static_cast<int64_t>((static_cast<uint64_t>(bits) * static_cast<uint64_t>(n)) >> 32);
}

// a * b + c rounded twice, never fused: the host (built with -ffp-contract=off) and the device
// must round identically, because floor() of the result picks an integer crop length.
IGM_HD double mul_add_rn(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(__dmul_rn(a, b), c);
#else
  return a * b + c;
#endif
}

// ---- crop -------------------------------------------------------------------------------

constexpr int64_t kMinCropFrames = 64;  // MAMP's lower bound on the cropped length (NTU's default)

IGM_HD int64_t train_crop_length(int64_t valid, double p, int64_t min_crop = kMinCropFrames) {
  int64_t length = static_cast<int64_t>(floor(static_cast<double>(valid) * p));
  length = length > min_crop ? length : min_crop;
  return length < valid ? length : valid;
}

// MAMP's centre crop: bias = int((1-p)*L/2) frames off each end.
IGM_HD void center_crop(int64_t valid, double p, int64_t& start, int64_t& length) {
  const int64_t bias = static_cast<int64_t>((1.0 - p) * static_cast<double>(valid) / 2.0);
  start = bias;
  length = valid - 2 * bias;
}

// Per-sample parameters: crop window and rotation angles (zero when theta == 0).
struct SampleParams {
  int64_t start, length;
  float angles[3];
};

IGM_HD SampleParams sample_params(int64_t valid, int64_t seed, int64_t epoch, int64_t index,
                                  bool center, double p_min, double p_max, double theta,
                                  int64_t min_crop = kMinCropFrames) {
  SampleParams out;
  const U32x4 r0 = sample_random_block(seed, epoch, index, 0);
  const U32x4 r1 = sample_random_block(seed, epoch, index, 1);
  if (center) {
    center_crop(valid, p_min, out.start, out.length);
  } else {
    const double p = mul_add_rn(uniform01(r0.v[0]), p_max - p_min, p_min);
    out.length = train_crop_length(valid, p, min_crop);
    out.start = uniform_below(r0.v[1], valid - out.length + 1);
  }
  const uint32_t angle_bits[3] = {r0.v[2], r0.v[3], r1.v[0]};
  for (int k = 0; k < 3; ++k) {
    out.angles[k] = static_cast<float>(mul_add_rn(uniform01(angle_bits[k]), 2.0 * theta, -theta));
  }
  return out;
}

// ---- optional extras ----------------------------------------------------------------------

constexpr uint32_t kJointMaskBlock = 4;

// Off-diagonal shear coefficients ~ U(-shear, shear) and the key of the sample's noise stream.
struct SampleExtras {
  float shear[6];
  uint64_t noise_key;
};

IGM_HD SampleExtras sample_extras(int64_t seed, int64_t epoch, int64_t index, double shear) {
  const U32x4 r1 = sample_random_block(seed, epoch, index, 1);
  const U32x4 r2 = sample_random_block(seed, epoch, index, 2);
  const U32x4 r3 = sample_random_block(seed, epoch, index, 3);
  const uint32_t bits[6] = {r1.v[1], r1.v[2], r1.v[3], r2.v[0], r2.v[1], r2.v[2]};
  SampleExtras out;
  for (int k = 0; k < 6; ++k) out.shear[k] = static_cast<float>(mul_add_rn(uniform01(bits[k]), 2.0 * shear, -shear));
  out.noise_key = static_cast<uint64_t>(r2.v[3]) | (static_cast<uint64_t>(r3.v[0]) << 32);
  return out;
}

// masked[v] = 1 with probability p, for v < joints.
IGM_HD void sample_joint_mask(int64_t seed, int64_t epoch, int64_t index, int64_t joints, double p, bool* masked) {
  for (int64_t v0 = 0; v0 < joints; v0 += 4) {
    const U32x4 r = sample_random_block(seed, epoch, index, kJointMaskBlock + static_cast<uint32_t>(v0 / 4));
    for (int64_t k = 0; k < 4 && v0 + k < joints; ++k) masked[v0 + k] = uniform01(r.v[k]) < p;
  }
}

// Three N(0, 1) draws for output point `point` of a sample (Box-Muller on one Philox block).
IGM_HD void gaussian3(uint64_t noise_key, uint64_t point, float out[3]) {
  U32x4 ctr = {{static_cast<uint32_t>(point), static_cast<uint32_t>(point >> 32), 0u, 0u}};
  const U32x4 r = philox4x32_10(ctr, static_cast<uint32_t>(noise_key), static_cast<uint32_t>(noise_key >> 32));
  const float kTwoPi = 6.283185307179586f;
  // (bits >> 8) + 1 in [1, 2^24]: u in (0, 1], so log(u) is finite.
  const float u0 = static_cast<float>((r.v[0] >> 8) + 1) * 5.9604644775390625e-8f;
  const float u2 = static_cast<float>((r.v[2] >> 8) + 1) * 5.9604644775390625e-8f;
  const float radius0 = sqrtf(-2.f * logf(u0)), radius1 = sqrtf(-2.f * logf(u2));
  const float angle0 = kTwoPi * static_cast<float>(r.v[1] >> 8) * 5.9604644775390625e-8f;
  const float angle1 = kTwoPi * static_cast<float>(r.v[3] >> 8) * 5.9604644775390625e-8f;
  out[0] = radius0 * cosf(angle0);
  out[1] = radius0 * sinf(angle0);
  out[2] = radius1 * cosf(angle1);
}

// ---- linear resize (F.interpolate, mode='linear', align_corners=False) -----------------------

struct LinearTap {
  int64_t i0, i1;  // source frames, relative to the crop start
  float w0, w1;    // their weights
};

// PyTorch's float32 arithmetic: scale = in/out, src = max(scale*(dst+0.5)-0.5, 0),
// i0 = min(floor(src), in-1), i1 = i0 + (i0 < in-1), w1 = clamp(src - i0, 0, 1), w0 = 1 - w1.
IGM_HD LinearTap linear_tap(int64_t in_frames, int64_t out_frames, int64_t dst) {
  const float scale = static_cast<float>(in_frames) / static_cast<float>(out_frames);
  float src = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  src = src < 0.f ? 0.f : src;
  LinearTap tap;
  tap.i0 = static_cast<int64_t>(floorf(src));
  tap.i0 = tap.i0 < in_frames - 1 ? tap.i0 : in_frames - 1;
  tap.i1 = tap.i0 + (tap.i0 < in_frames - 1 ? 1 : 0);
  float w1 = src - static_cast<float>(tap.i0);
  w1 = w1 < 0.f ? 0.f : (w1 > 1.f ? 1.f : w1);
  tap.w1 = w1;
  tap.w0 = 1.f - w1;
  return tap;
}

// ---- rotation ---------------------------------------------------------------------------

struct Mat3 {
  float m[9];  // row-major
};

IGM_HD Mat3 matmul3(const Mat3& a, const Mat3& b) {
  Mat3 c;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      c.m[3 * i + j] = a.m[3 * i] * b.m[j] + a.m[3 * i + 1] * b.m[3 + j] + a.m[3 * i + 2] * b.m[6 + j];
  return c;
}

// MAMP's `_rot`: R = Rz @ Ry @ Rx for angles (ax, ay, az).
IGM_HD Mat3 rotation_matrix(float ax, float ay, float az) {
  const float cx = cosf(ax), sx = sinf(ax), cy = cosf(ay), sy = sinf(ay), cz = cosf(az), sz = sinf(az);
  const Mat3 rx = {{1.f, 0.f, 0.f, 0.f, cx, sx, 0.f, -sx, cx}};
  const Mat3 ry = {{cy, 0.f, -sy, 0.f, 1.f, 0.f, sy, 0.f, cy}};
  const Mat3 rz = {{cz, sz, 0.f, -sz, cz, 0.f, 0.f, 0.f, 1.f}};
  return matmul3(matmul3(rz, ry), rx);
}

// [[1, s0, s1], [s2, 1, s3], [s4, s5, 1]]
IGM_HD Mat3 shear_matrix(const float s[6]) {
  const Mat3 m = {{1.f, s[0], s[1], s[2], 1.f, s[3], s[4], s[5], 1.f}};
  return m;
}

// What every output point of one sample goes through after the resize.
struct SampleTransform {
  Mat3 m;              // R @ S: shear (identity when absent), then rotation
  uint64_t noise_key;  // the sample's Gaussian noise stream
  float noise_sigma;   // 0: no noise
};

// shear6 and noise_key may be null (extra not used).
IGM_HD SampleTransform sample_transform(const float* angles3, const float* shear6, const int64_t* noise_key,
                                        float noise_sigma) {
  SampleTransform tr;
  tr.m = rotation_matrix(angles3[0], angles3[1], angles3[2]);
  if (shear6 != nullptr) tr.m = matmul3(tr.m, shear_matrix(shear6));
  tr.noise_key = noise_key != nullptr ? static_cast<uint64_t>(*noise_key) : 0u;
  tr.noise_sigma = noise_key != nullptr ? noise_sigma : 0.f;
  return tr;
}

// One output point (index `point` among the sample's out_frames * V * M): interpolate the 3
// coordinates between two source frames, transform, add noise; a masked joint stays zero.
IGM_HD void transform_point(const SampleTransform& tr, const LinearTap& tap, const float a[3], const float b[3],
                            uint64_t point, bool masked, float out[3]) {
  if (masked) {
    out[0] = out[1] = out[2] = 0.f;
    return;
  }
  float p[3];
  for (int c = 0; c < 3; ++c) p[c] = tap.w0 * a[c] + tap.w1 * b[c];
  for (int c = 0; c < 3; ++c) out[c] = tr.m.m[3 * c] * p[0] + tr.m.m[3 * c + 1] * p[1] + tr.m.m[3 * c + 2] * p[2];
  if (tr.noise_sigma != 0.f) {
    float g[3];
    gaussian3(tr.noise_key, point, g);
    for (int c = 0; c < 3; ++c) out[c] += tr.noise_sigma * g[c];
  }
}

}  // namespace igm_aug
