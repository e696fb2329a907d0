// augment.h: image augmentation for analysis and training: a random affine map (rotation,
// translation, scale, shear about the image centre) with bilinear sampling and zero fill,
// then additive Gaussian noise. Every random number comes from Philox at counters fixed by
// (seed, index), so augmentation `index` of an image is the same on every run, in any order.
#pragma once
#include <cstdint>
#include <string>

namespace gl::data {

struct AugmentOptions {
  double rotation_deg = 15.0;  // angle uniform in [-r, r]
  double translate = 0.1;      // shift uniform in [-t, t] x image size, per axis
  double scale_min = 0.9, scale_max = 1.1;
  double shear_deg = 10.0;  // x-shear angle uniform in [-s, s]
  double noise_std = 0.05;  // Gaussian noise on [0, 1] pixels; 0: none
  uint64_t seed = 0;
};

struct AffineParams {
  double angle_rad = 0, tx = 0, ty = 0, scale = 1, shear_rad = 0;
};

// The parameters of augmentation `index`.
AffineParams sample_affine(const AugmentOptions& o, uint64_t index);

// Warps one image (CHW u8, values / 255) by `p` into dst (CHW floats in [0, 1]): each output
// pixel samples the source bilinearly at the inverse-mapped position; outside is 0.
void warp_affine(const uint8_t* src, int64_t channels, int64_t height, int64_t width,
                 const AffineParams& p, float* dst);

// Augmentation `index`: warp by sample_affine(o, index), add noise, clamp to [0, 1].
void augment_image(const uint8_t* src, int64_t channels, int64_t height, int64_t width,
                   const AugmentOptions& o, uint64_t index, float* dst);

}  // namespace gl::data

namespace gl::data {

// Training-time augmentation, `--augment LIST`: any of affine, crop, flip, elastic, noise,
// each optionally with parameters, e.g. "affine:rotation=10:translate=0.08,crop:pad=2,noise".
// Applied in this order to an image with values in [0, 1]; each random number comes from
// Philox at a counter fixed by (seed, index), so sample `index` is the same on every run.
struct TrainAugment {
  bool affine = false, crop = false, flip = false, elastic = false, noise = false;
  AugmentOptions affine_opts{10.0, 0.08, 0.9, 1.1,
                             5.0,  0.0,  0};  // rotation, translate, scale, shear
  int64_t crop_pad = 2;         // zero-pad by this many pixels, then crop back at a random offset
  double noise_std = 0.05;      // additive Gaussian noise, then clamp to [0, 1]
  double elastic_alpha = 34.0;  // displacement scale in pixels (Simard et al. 2003)
  double elastic_sigma = 4.0;   // Gaussian smoothing of the displacement field, pixels
  uint64_t seed = 0;

  bool any() const { return affine || crop || flip || elastic || noise; }
  std::string str() const;  // canonical form of the list with every parameter ("none" if empty)
};

// Parses "none" or a comma list as above; throws gl::Error naming the bad part.
TrainAugment parse_train_augment(const std::string& list);

// Augments one CHW u8 image (pixels / 255) into dst (CHW floats in [0, 1]).
void augment_train_image(const uint8_t* src, int64_t channels, int64_t height, int64_t width,
                         const TrainAugment& a, uint64_t index, float* dst);

}  // namespace gl::data
