// augment.cpp: affine warps and noise. Augmentation `index` owns the Philox counter block
// starting at index * kStride, so each draw is addressable without replaying earlier ones.
#include "train/augment.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <set>
#include <sstream>
#include <vector>

#include "engine/core.h"
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

// ------------------------------------------------------------------ training augmentation
namespace {
// Counter layout inside an augmentation's block (index * kStride + k): affine 0..4 (shared
// with sample_affine), crop 5..6, flip 7, noise 8 + t, elastic 8 + count + t (dx) and
// 8 + 2 * count + t (dy), t the pixel.
constexpr uint64_t kCropX = 5, kCropY = 6, kFlip = 7, kNoise = 8;

double parse_number(const std::string& kind, const std::string& key, const std::string& v) {
  std::size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  GL_CHECK(used == v.size() && !v.empty() && std::isfinite(x),
           "augmentation {}: {}={} is not a number", kind, key, v);
  return x;
}

// Bilinear sample of a float plane, 0 outside.
float sample(const float* img, int64_t h, int64_t w, double sy, double sx) {
  const double fx = std::floor(sx), fy = std::floor(sy);
  const int64_t x0 = int64_t(fx), y0 = int64_t(fy);
  const double wx = sx - fx, wy = sy - fy;
  auto at = [&](int64_t y, int64_t x) -> double {
    if (x < 0 || y < 0 || x >= w || y >= h) return 0.0;
    return img[y * w + x];
  };
  return float((1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x0 + 1)) +
               wy * ((1 - wx) * at(y0 + 1, x0) + wx * at(y0 + 1, x0 + 1)));
}

// In-place separable Gaussian blur of an h x w field (zero beyond the edges), radius 3 sigma.
void gaussian_blur(std::vector<double>& f, int64_t h, int64_t w, double sigma) {
  const int64_t r = std::max<int64_t>(1, int64_t(std::ceil(3 * sigma)));
  // Scratch reused across calls: the loader augments every image of every batch.
  thread_local std::vector<double> k, tmp;
  k.assign(std::size_t(2 * r + 1), 0.0);
  tmp.resize(f.size());
  double sum = 0;
  for (int64_t i = -r; i <= r; ++i)
    sum += k[std::size_t(i + r)] = std::exp(-0.5 * double(i * i) / (sigma * sigma));
  for (double& v : k) v /= sum;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      double acc = 0;
      for (int64_t i = -r; i <= r; ++i)
        if (x + i >= 0 && x + i < w) acc += k[std::size_t(i + r)] * f[std::size_t(y * w + x + i)];
      tmp[std::size_t(y * w + x)] = acc;
    }
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      double acc = 0;
      for (int64_t i = -r; i <= r; ++i)
        if (y + i >= 0 && y + i < h)
          acc += k[std::size_t(i + r)] * tmp[std::size_t((y + i) * w + x)];
      f[std::size_t(y * w + x)] = acc;
    }
}
}  // namespace

std::string TrainAugment::str() const {
  std::vector<std::string> parts;
  const AugmentOptions& o = affine_opts;
  if (affine)
    parts.push_back(
        fmt::format("affine:rotation={}:scale_max={}:scale_min={}:shear={}:translate={}",
                    o.rotation_deg, o.scale_max, o.scale_min, o.shear_deg, o.translate));
  if (crop) parts.push_back(fmt::format("crop:pad={}", crop_pad));
  if (flip) parts.push_back("flip");
  if (elastic)
    parts.push_back(fmt::format("elastic:alpha={}:sigma={}", elastic_alpha, elastic_sigma));
  if (noise) parts.push_back(fmt::format("noise:std={}", noise_std));
  if (parts.empty()) return "none";
  std::string s = parts[0];
  for (std::size_t i = 1; i < parts.size(); ++i) s += "," + parts[i];
  return s;
}

TrainAugment parse_train_augment(const std::string& list) {
  TrainAugment a;
  if (list.empty() || list == "none") return a;
  GL_CHECK(list.back() != ',', "augmentation list '{}' ends with a comma", list);
  std::stringstream items(list);
  std::string item;
  while (std::getline(items, item, ',')) {
    GL_CHECK(!item.empty(), "augmentation list '{}' has an empty item", list);
    GL_CHECK(item.back() != ':', "augmentation {}: '{}' ends with a ':'",
             item.substr(0, item.find(':')), item);
    std::stringstream fields(item);
    std::string kind, kv;
    std::set<std::string> keys;  // each parameter once
    std::getline(fields, kind, ':');
    bool* on = kind == "affine"    ? &a.affine
               : kind == "crop"    ? &a.crop
               : kind == "flip"    ? &a.flip
               : kind == "elastic" ? &a.elastic
               : kind == "noise"   ? &a.noise
                                   : nullptr;
    GL_CHECK(on, "unknown augmentation '{}' (affine, crop, flip, elastic, noise)", kind);
    GL_CHECK(!*on, "augmentation {} is listed twice", kind);
    *on = true;
    while (std::getline(fields, kv, ':')) {
      auto eq = kv.find('=');
      GL_CHECK(eq != std::string::npos, "augmentation {}: expected key=value, got '{}'", kind, kv);
      std::string key = kv.substr(0, eq);
      GL_CHECK(keys.insert(key).second, "augmentation {}: {} is given twice", kind, key);
      double v = parse_number(kind, key, kv.substr(eq + 1));
      auto bad = [&] {
        return Error(fmt::format("augmentation {}: unknown parameter '{}'", kind, key));
      };
      if (kind == "affine") {
        if (key == "rotation")
          a.affine_opts.rotation_deg = v;
        else if (key == "translate")
          a.affine_opts.translate = v;
        else if (key == "scale_min")
          a.affine_opts.scale_min = v;
        else if (key == "scale_max")
          a.affine_opts.scale_max = v;
        else if (key == "shear")
          a.affine_opts.shear_deg = v;
        else
          throw bad();
      } else if (kind == "crop") {
        if (key != "pad") throw bad();
        // More padding than any image has pixels crops to black.
        GL_CHECK(v >= 0 && v <= 1024 && v == std::floor(v),
                 "augmentation crop: pad must be a whole number from 0 to 1024, got {}", v);
        a.crop_pad = int64_t(v);
      } else if (kind == "elastic") {
        if (key == "alpha")
          a.elastic_alpha = v;
        else if (key == "sigma")
          a.elastic_sigma = v;
        else
          throw bad();
      } else if (kind == "noise") {
        if (key != "std") throw bad();
        a.noise_std = v;
      } else {
        throw bad();
      }
    }
  }
  const AugmentOptions& o = a.affine_opts;
  GL_CHECK(o.scale_min > 0 && o.scale_min <= o.scale_max,
           "augmentation affine: need 0 < scale_min <= scale_max, got {} and {}", o.scale_min,
           o.scale_max);
  GL_CHECK(std::abs(o.shear_deg) < 80,
           "augmentation affine: shear must be below 80 degrees, got {}", o.shear_deg);
  // Beyond these every image leaves the frame or turns to noise: a typo, not a setting.
  GL_CHECK(std::abs(o.rotation_deg) <= 180,
           "augmentation affine: rotation must be within 180 degrees, got {}", o.rotation_deg);
  GL_CHECK(o.translate >= 0 && o.translate <= 1,
           "augmentation affine: translate is a fraction of the image size, from 0 to 1, got {}",
           o.translate);
  GL_CHECK(o.scale_max <= 100, "augmentation affine: scale_max must be at most 100, got {}",
           o.scale_max);
  GL_CHECK(a.noise_std >= 0 && a.noise_std <= 100,
           "augmentation noise: std must be from 0 to 100, got {}", a.noise_std);
  GL_CHECK(a.elastic_sigma > 0 && a.elastic_sigma <= 1000 && a.elastic_alpha >= 0 &&
               a.elastic_alpha <= 10000,
           "augmentation elastic: need 0 < sigma <= 1000 and 0 <= alpha <= 10000, got sigma={} "
           "alpha={}",
           a.elastic_sigma, a.elastic_alpha);
  return a;
}

void augment_train_image(const uint8_t* src, int64_t channels, int64_t height, int64_t width,
                         const TrainAugment& a, uint64_t index, float* dst) {
  const int64_t plane = height * width, count = channels * plane;
  const uint64_t base = index * kStride;
  auto uniform = [&](uint64_t k) { return philox::uniform_at(a.seed, base, k); };
  if (a.affine) {
    AugmentOptions o = a.affine_opts;
    o.seed = a.seed;
    warp_affine(src, channels, height, width, sample_affine(o, index), dst);
  } else {
    for (int64_t t = 0; t < count; ++t) dst[t] = float(src[t] / 255.0);
  }
  thread_local std::vector<float> tmp;  // per-thread scratch, reused across images
  if (a.crop && a.crop_pad > 0) {
    // Pad by p then crop at (dy, dx) in [0, 2p]: a shift by (dy - p, dx - p) with zero fill.
    const int64_t span = 2 * a.crop_pad + 1;
    const int64_t dx = std::min(span - 1, int64_t(uniform(kCropX) * double(span))) - a.crop_pad;
    const int64_t dy = std::min(span - 1, int64_t(uniform(kCropY) * double(span))) - a.crop_pad;
    tmp.assign(dst, dst + count);
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t y = 0; y < height; ++y)
        for (int64_t x = 0; x < width; ++x) {
          const int64_t sy = y + dy, sx = x + dx;
          dst[c * plane + y * width + x] = (sy < 0 || sx < 0 || sy >= height || sx >= width)
                                               ? 0.0f
                                               : tmp[std::size_t(c * plane + sy * width + sx)];
        }
  }
  if (a.flip && uniform(kFlip) < 0.5)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t y = 0; y < height; ++y)
        std::reverse(dst + c * plane + y * width, dst + c * plane + (y + 1) * width);
  if (a.elastic && a.elastic_alpha > 0) {
    // One smoothed random displacement field for all channels (Simard et al. 2003).
    thread_local std::vector<double> fx, fy;
    fx.resize(std::size_t(plane));
    fy.resize(std::size_t(plane));
    for (int64_t t = 0; t < plane; ++t) {
      fx[std::size_t(t)] = 2 * uniform(kNoise + uint64_t(count + t)) - 1;
      fy[std::size_t(t)] = 2 * uniform(kNoise + uint64_t(2 * count + t)) - 1;
    }
    gaussian_blur(fx, height, width, a.elastic_sigma);
    gaussian_blur(fy, height, width, a.elastic_sigma);
    tmp.assign(dst, dst + count);
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t y = 0; y < height; ++y)
        for (int64_t x = 0; x < width; ++x) {
          const std::size_t t = std::size_t(y * width + x);
          dst[c * plane + y * width + x] =
              sample(tmp.data() + c * plane, height, width, double(y) + a.elastic_alpha * fy[t],
                     double(x) + a.elastic_alpha * fx[t]);
        }
  }
  if (a.noise && a.noise_std > 0)
    for (int64_t t = 0; t < count; ++t)
      dst[t] += float(a.noise_std * philox::normal_at(a.seed, base, kNoise + uint64_t(t)));
  for (int64_t t = 0; t < count; ++t) dst[t] = std::clamp(dst[t], 0.0f, 1.0f);
}

}  // namespace gl::data
