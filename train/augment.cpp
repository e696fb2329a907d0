// augment.cpp: affine warps and noise. Augmentation `index` owns the Philox counter block
// starting at index * kStride, so each draw is addressable without replaying earlier ones.
#include "train/augment.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "kernels/philox.h"

namespace gl::data {
namespace {
// Counters per augmentation: 5 affine parameters, then one per pixel of noise. 2^32 leaves
// room for any image size this engine reads (CIFAR's 3072 values, and far beyond).
constexpr uint64_t kStride = uint64_t(1) << 32;

double uniform_in(const AugmentOptions& o, uint64_t index, uint64_t k, double lo, double hi) {
  return lo + (hi - lo) * philox::uniform_at(o.seed, index * kStride, k);
}
}  // namespace

AffineParams sample_affine(const AugmentOptions& o, uint64_t index) {
  const double deg = std::numbers::pi / 180.0;
  AffineParams p;
  p.angle_rad = uniform_in(o, index, 0, -o.rotation_deg, o.rotation_deg) * deg;
  p.tx = uniform_in(o, index, 1, -o.translate, o.translate);
  p.ty = uniform_in(o, index, 2, -o.translate, o.translate);
  p.scale = uniform_in(o, index, 3, o.scale_min, o.scale_max);
  p.shear_rad = uniform_in(o, index, 4, -o.shear_deg, o.shear_deg) * deg;
  return p;
}

void warp_affine(const uint8_t* src, int64_t channels, int64_t height, int64_t width,
                 const AffineParams& p, float* dst) {
  // Forward map about the centre: out = R * Shear * S * (in - c) + c + t. Sampling needs the
  // inverse: in = (R * Shear * S)^-1 (out - c - t) + c.
  const double c = std::cos(p.angle_rad), s = std::sin(p.angle_rad), k = std::tan(p.shear_rad);
  const double a00 = c * p.scale, a01 = (c * k - s) * p.scale;
  const double a10 = s * p.scale, a11 = (s * k + c) * p.scale;
  const double det = a00 * a11 - a01 * a10;
  const double i00 = a11 / det, i01 = -a01 / det, i10 = -a10 / det, i11 = a00 / det;
  const double cx = (double(width) - 1) / 2, cy = (double(height) - 1) / 2;
  const double tx = p.tx * double(width), ty = p.ty * double(height);
  for (int64_t ch = 0; ch < channels; ++ch) {
    const uint8_t* img = src + ch * height * width;
    auto at = [&](int64_t y, int64_t x) -> double {
      if (x < 0 || y < 0 || x >= width || y >= height) return 0.0;
      return img[y * width + x] / 255.0;
    };
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x) {
        const double ox = double(x) - cx - tx, oy = double(y) - cy - ty;
        const double sx = i00 * ox + i01 * oy + cx, sy = i10 * ox + i11 * oy + cy;
        const double fx = std::floor(sx), fy = std::floor(sy);
        const int64_t x0 = int64_t(fx), y0 = int64_t(fy);
        const double wx = sx - fx, wy = sy - fy;
        const double v = (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x0 + 1)) +
                         wy * ((1 - wx) * at(y0 + 1, x0) + wx * at(y0 + 1, x0 + 1));
        dst[(ch * height + y) * width + x] = float(v);
      }
  }
}

void augment_image(const uint8_t* src, int64_t channels, int64_t height, int64_t width,
                   const AugmentOptions& o, uint64_t index, float* dst) {
  warp_affine(src, channels, height, width, sample_affine(o, index), dst);
  const int64_t count = channels * height * width;
  for (int64_t t = 0; t < count; ++t) {
    double v = dst[t];
    if (o.noise_std > 0)
      v += o.noise_std * philox::normal_at(o.seed, index * kStride, 8 + uint64_t(t));
    dst[t] = float(std::clamp(v, 0.0, 1.0));
  }
}

}  // namespace gl::data
