// Unit tests of csrc/augment_math.h (run by ctest): Philox known answers, crop and
// interpolation index math, rotation matrices. Expected values are hand-computed or come from
// the Random123 known-answer file, never from the code under test.
#include <cmath>
#include <cstdio>

#include "augment_math.h"

static int failures = 0;

#define EXPECT(cond)                                                   \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::printf("%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);  \
      ++failures;                                                      \
    }                                                                  \
  } while (0)

static bool near(double a, double b, double tol = 1e-6) { return std::fabs(a - b) <= tol; }

// Random123 kat_vectors, "philox4x32 10": counter[4] key[2] -> output[4].
static void test_philox_known_answers() {
  struct Case {
    uint32_t ctr[4], key[2], want[4];
  };
  const Case cases[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Case& c : cases) {
    igm_aug::U32x4 ctr = {{c.ctr[0], c.ctr[1], c.ctr[2], c.ctr[3]}};
    const igm_aug::U32x4 out = igm_aug::philox4x32_10(ctr, c.key[0], c.key[1]);
    for (int k = 0; k < 4; ++k) EXPECT(out.v[k] == c.want[k]);
  }
  // The per-sample stream is Philox at counter (index lo, index hi, epoch, block), key = seed.
  const igm_aug::U32x4 block = igm_aug::sample_random_block(0x299f31d0a4093822LL, 0x13198a2e,
                                                            0x85a308d3243f6a88LL, 0x03707344);
  EXPECT(block.v[0] == 0xd16cfe09 && block.v[3] == 0x24126ea1);
}

static void test_uniforms() {
  EXPECT(igm_aug::uniform01(0) == 0.0);
  EXPECT(igm_aug::uniform01(0x80000000u) == 0.5);
  EXPECT(igm_aug::uniform01(0xffffffffu) < 1.0);
  EXPECT(igm_aug::uniform_below(0, 7) == 0);
  EXPECT(igm_aug::uniform_below(0xffffffffu, 7) == 6);
  EXPECT(igm_aug::uniform_below(0x80000000u, 10) == 5);
  EXPECT(igm_aug::uniform_below(0xffffffffu, 1) == 0);
}

static void test_crop() {
  // len = min(max(floor(L*p), 64), L)
  EXPECT(igm_aug::train_crop_length(300, 0.5) == 150);
  EXPECT(igm_aug::train_crop_length(300, 0.999) == 299);
  EXPECT(igm_aug::train_crop_length(100, 0.5) == 64);  // lower bound 64
  EXPECT(igm_aug::train_crop_length(30, 0.9) == 30);   // but never above L
  EXPECT(igm_aug::train_crop_length(1, 0.5) == 1);
  // centre crop, bias = int((1 - 0.95) * L / 2): 7.5000000000000058 -> 7, 2.5000000000000022 -> 2
  int64_t start, length;
  igm_aug::center_crop(300, 0.95, start, length);
  EXPECT(start == 7 && length == 286);
  igm_aug::center_crop(100, 0.95, start, length);
  EXPECT(start == 2 && length == 96);
  igm_aug::center_crop(1, 0.95, start, length);
  EXPECT(start == 0 && length == 1);
  igm_aug::center_crop(40, 0.5, start, length);
  EXPECT(start == 10 && length == 20);
}

static void test_sample_params() {
  for (int64_t index = 0; index < 2000; ++index) {
    const int64_t valid = 1 + (index * 37) % 300;
    const auto s = igm_aug::sample_params(valid, 3, 5, index, false, 0.5, 1.0, 0.3);
    const int64_t lo = igm_aug::train_crop_length(valid, 0.5), hi = igm_aug::train_crop_length(valid, 1.0);
    EXPECT(s.length >= lo && s.length <= hi);
    EXPECT(s.start >= 0 && s.start + s.length <= valid);
    for (int k = 0; k < 3; ++k) EXPECT(s.angles[k] >= -0.3f && s.angles[k] <= 0.3f);
    const auto again = igm_aug::sample_params(valid, 3, 5, index, false, 0.5, 1.0, 0.3);
    EXPECT(again.start == s.start && again.length == s.length && again.angles[2] == s.angles[2]);
  }
  const auto c = igm_aug::sample_params(300, 0, 0, 9, true, 0.95, 0.95, 0.0);
  EXPECT(c.start == 7 && c.length == 286 && c.angles[0] == 0.f && c.angles[1] == 0.f && c.angles[2] == 0.f);
  // Different epochs give different streams.
  const auto e0 = igm_aug::sample_params(300, 0, 0, 1, false, 0.5, 1.0, 0.3);
  const auto e1 = igm_aug::sample_params(300, 0, 1, 1, false, 0.5, 1.0, 0.3);
  EXPECT(e0.angles[0] != e1.angles[0]);
  // min_crop: MAMP's 64 takes a 40-frame sequence whole; 8 lets p = 0.5 crop it to 20 frames.
  EXPECT(igm_aug::train_crop_length(40, 0.5) == 40);
  EXPECT(igm_aug::train_crop_length(40, 0.5, 8) == 20 && igm_aug::train_crop_length(40, 0.1, 8) == 8);
  EXPECT(igm_aug::train_crop_length(5, 0.5, 8) == 5);
}

static void test_linear_tap() {
  // 300 -> 120: scale 2.5, src = 2.5 * (dst + 0.5) - 0.5
  auto t = igm_aug::linear_tap(300, 120, 0);
  EXPECT(t.i0 == 0 && t.i1 == 1 && near(t.w1, 0.75) && near(t.w0, 0.25));
  t = igm_aug::linear_tap(300, 120, 119);
  EXPECT(t.i0 == 298 && t.i1 == 299 && near(t.w1, 0.25));
  // identity size: src = dst exactly
  for (int64_t d = 0; d < 50; ++d) {
    t = igm_aug::linear_tap(50, 50, d);
    EXPECT(t.i0 == d && t.w1 == 0.f && t.w0 == 1.f);
  }
  // 2 -> 4: src = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (i0 = 1 = last frame, i1 stays 1)
  t = igm_aug::linear_tap(2, 4, 0);
  EXPECT(t.i0 == 0 && t.i1 == 1 && t.w1 == 0.f);
  t = igm_aug::linear_tap(2, 4, 1);
  EXPECT(t.i0 == 0 && near(t.w1, 0.25));
  t = igm_aug::linear_tap(2, 4, 3);
  EXPECT(t.i0 == 1 && t.i1 == 1 && near(t.w1, 0.25));
  // a single frame is replicated
  for (int64_t d = 0; d < 120; ++d) {
    t = igm_aug::linear_tap(1, 120, d);
    EXPECT(t.i0 == 0 && t.i1 == 0 && near(t.w0 + t.w1, 1.0));
  }
}

static void test_rotation() {
  const igm_aug::Mat3 id = igm_aug::rotation_matrix(0.f, 0.f, 0.f);
  for (int k = 0; k < 9; ++k) EXPECT(id.m[k] == (k % 4 == 0 ? 1.f : 0.f));
  // Single axes, MAMP's sign conventions: Rx row 1 = (0, cos, sin), Ry row 0 = (cos, 0, -sin),
  // Rz row 0 = (cos, sin, 0).
  const float a = 0.25f;
  const igm_aug::Mat3 rx = igm_aug::rotation_matrix(a, 0.f, 0.f);
  EXPECT(near(rx.m[4], std::cos(a)) && near(rx.m[5], std::sin(a)) && near(rx.m[7], -std::sin(a)));
  const igm_aug::Mat3 ry = igm_aug::rotation_matrix(0.f, a, 0.f);
  EXPECT(near(ry.m[0], std::cos(a)) && near(ry.m[2], -std::sin(a)) && near(ry.m[6], std::sin(a)));
  const igm_aug::Mat3 rz = igm_aug::rotation_matrix(0.f, 0.f, a);
  EXPECT(near(rz.m[0], std::cos(a)) && near(rz.m[1], std::sin(a)) && near(rz.m[3], -std::sin(a)));
  // Composition order Rz @ Ry @ Rx, in double from the explicit matrices.
  const double ax = 0.3, ay = -0.2, az = 0.1;
  const double Rx[9] = {1, 0, 0, 0, std::cos(ax), std::sin(ax), 0, -std::sin(ax), std::cos(ax)};
  const double Ry[9] = {std::cos(ay), 0, -std::sin(ay), 0, 1, 0, std::sin(ay), 0, std::cos(ay)};
  const double Rz[9] = {std::cos(az), std::sin(az), 0, -std::sin(az), std::cos(az), 0, 0, 0, 1};
  double zy[9], zyx[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      zy[3 * i + j] = 0;
      for (int k = 0; k < 3; ++k) zy[3 * i + j] += Rz[3 * i + k] * Ry[3 * k + j];
    }
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      zyx[3 * i + j] = 0;
      for (int k = 0; k < 3; ++k) zyx[3 * i + j] += zy[3 * i + k] * Rx[3 * k + j];
    }
  const igm_aug::Mat3 r = igm_aug::rotation_matrix(0.3f, -0.2f, 0.1f);
  for (int k = 0; k < 9; ++k) EXPECT(near(r.m[k], zyx[k]));
  // Orthonormal with determinant +1.
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      double dot = 0;
      for (int k = 0; k < 3; ++k) dot += r.m[3 * i + k] * r.m[3 * j + k];
      EXPECT(near(dot, i == j ? 1.0 : 0.0));
    }
  const float* m = r.m;
  const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                     m[2] * (m[3] * m[7] - m[4] * m[6]);
  EXPECT(near(det, 1.0));
}

static void test_transform_point() {
  const float angles[3] = {0.f, 0.f, 0.5f};
  const float shear[6] = {0.5f, 0.f, 0.f, 0.f, 0.f, 0.f};  // x += 0.5 y, before the rotation
  const igm_aug::LinearTap tap = {0, 1, 0.25f, 0.75f};
  const float a[3] = {1.f, 2.f, 3.f}, b[3] = {5.f, 6.f, 7.f};
  const double p[3] = {4.0 + 0.5 * 5.0, 5.0, 6.0};  // 0.25 a + 0.75 b, sheared
  float out[3];
  igm_aug::transform_point(igm_aug::sample_transform(angles, shear, nullptr, 0.f), tap, a, b, 0, false, out);
  EXPECT(near(out[0], std::cos(0.5) * p[0] + std::sin(0.5) * p[1], 1e-5));
  EXPECT(near(out[1], -std::sin(0.5) * p[0] + std::cos(0.5) * p[1], 1e-5));
  EXPECT(near(out[2], p[2], 1e-6));
  igm_aug::transform_point(igm_aug::sample_transform(angles, shear, nullptr, 0.f), tap, a, b, 0, true, out);
  EXPECT(out[0] == 0.f && out[1] == 0.f && out[2] == 0.f);  // a masked joint stays zero
  // Noise: the same key and point give the same draw; the draw is added with weight sigma.
  const int64_t key = 12345;
  float noisy[3], again[3], clean[3];
  igm_aug::transform_point(igm_aug::sample_transform(angles, nullptr, &key, 0.1f), tap, a, b, 7, false, noisy);
  igm_aug::transform_point(igm_aug::sample_transform(angles, nullptr, &key, 0.1f), tap, a, b, 7, false, again);
  igm_aug::transform_point(igm_aug::sample_transform(angles, nullptr, nullptr, 0.1f), tap, a, b, 7, false, clean);
  float g[3];
  igm_aug::gaussian3(key, 7, g);
  for (int c = 0; c < 3; ++c) EXPECT(noisy[c] == again[c] && near(noisy[c], clean[c] + 0.1 * g[c], 1e-6));
}

static void test_gaussian_moments() {
  double sum = 0, sum_sq = 0, within_one = 0;
  const int draws = 200000;
  for (int point = 0; point < draws; ++point) {
    float g[3];
    igm_aug::gaussian3(0xfeedULL, static_cast<uint64_t>(point), g);
    for (int c = 0; c < 3; ++c) {
      EXPECT(std::isfinite(g[c]));
      sum += g[c];
      sum_sq += g[c] * g[c];
      within_one += std::fabs(g[c]) < 1.0;
    }
  }
  const double n = 3.0 * draws, mean = sum / n;
  EXPECT(std::fabs(mean) < 0.01);
  EXPECT(std::fabs(sum_sq / n - mean * mean - 1.0) < 0.01);
  EXPECT(std::fabs(within_one / n - 0.682689) < 0.005);  // P(|Z| < 1) of a standard normal
}

static void test_joint_mask() {
  bool none[25], all[25];
  igm_aug::sample_joint_mask(1, 2, 3, 25, 0.0, none);
  igm_aug::sample_joint_mask(1, 2, 3, 25, 1.0, all);
  for (int v = 0; v < 25; ++v) EXPECT(!none[v] && all[v]);
  int masked = 0;
  for (int64_t index = 0; index < 2000; ++index) {
    bool m[25];
    igm_aug::sample_joint_mask(1, 2, index, 25, 0.2, m);
    for (int v = 0; v < 25; ++v) masked += m[v];
  }
  EXPECT(std::fabs(masked / 50000.0 - 0.2) < 0.01);
}

int main() {
  test_philox_known_answers();
  test_uniforms();
  test_crop();
  test_sample_params();
  test_linear_tap();
  test_rotation();
  test_transform_point();
  test_gaussian_moments();
  test_joint_mask();
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("augment_math: all checks passed\n");
  return 0;
}
