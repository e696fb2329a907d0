// test_augment.cpp: training augmentation (`--augment`) and the loader that applies it. Each
// transform is checked against what it must be: crop is an exact zero-filled shift within the
// pad, flip an exact mirror about half the time, noise has the requested moments, elastic with
// alpha 0 and affine with an identity range change nothing; the loader's augmented batch equals
// the per-image function at the documented index; parsing errors name the bad part.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "engine/core.h"
#include "tests/train/run_util.h"
#include "train/augment.h"
#include "train/loader.h"
#include "train/trainer.h"

namespace {

using gl::data::TrainAugment;

// A 2-channel test image with distinct, asymmetric values (no pixel saturated at 0 or 255
// except deliberately).
std::vector<uint8_t> test_image(int64_t c, int64_t h, int64_t w) {
  std::vector<uint8_t> img(std::size_t(c * h * w));
  for (int64_t i = 0; i < c * h * w; ++i) img[std::size_t(i)] = uint8_t((i * 37 + 11) % 251 + 1);
  return img;
}

std::vector<float> run(const std::vector<uint8_t>& img, int64_t c, int64_t h, int64_t w,
                       const TrainAugment& a, uint64_t index) {
  std::vector<float> out(img.size());
  gl::data::augment_train_image(img.data(), c, h, w, a, index, out.data());
  return out;
}

TEST(TrainAugment, CropIsAZeroFilledShiftWithinThePad) {
  const int64_t c = 2, h = 9, w = 11;
  auto img = test_image(c, h, w);
  TrainAugment a = gl::data::parse_train_augment("crop:pad=2");
  int shifted = 0;
  for (uint64_t index = 0; index < 40; ++index) {
    auto out = run(img, c, h, w, a, index);
    bool found = false;
    for (int dy = -2; dy <= 2 && !found; ++dy)
      for (int dx = -2; dx <= 2 && !found; ++dx) {
        bool same = true;
        for (int64_t ch = 0; ch < c && same; ++ch)
          for (int64_t y = 0; y < h && same; ++y)
            for (int64_t x = 0; x < w && same; ++x) {
              int64_t sy = y + dy, sx = x + dx;
              float want = (sy < 0 || sx < 0 || sy >= h || sx >= w)
                               ? 0.0f
                               : float(img[std::size_t((ch * h + sy) * w + sx)] / 255.0);
              same = out[std::size_t((ch * h + y) * w + x)] == want;
            }
        if (same) {
          found = true;
          shifted += dx != 0 || dy != 0;
        }
      }
    EXPECT_TRUE(found) << "augmentation " << index << " is not a shift within the pad";
  }
  EXPECT_GT(shifted, 20);  // 24 of 25 shifts move the image
}

TEST(TrainAugment, FlipMirrorsRowsAboutHalfTheTime) {
  const int64_t c = 3, h = 5, w = 7;
  auto img = test_image(c, h, w);
  TrainAugment a = gl::data::parse_train_augment("flip");
  int flipped = 0, n = 400;
  for (int index = 0; index < n; ++index) {
    auto out = run(img, c, h, w, a, uint64_t(index));
    bool same = true, mirror = true;
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          float v = out[std::size_t((ch * h + y) * w + x)];
          same &= v == float(img[std::size_t((ch * h + y) * w + x)] / 255.0);
          mirror &= v == float(img[std::size_t((ch * h + y) * w + (w - 1 - x))] / 255.0);
        }
    ASSERT_TRUE(same || mirror) << index;
    flipped += mirror;
  }
  // Binomial(400, 0.5): 5 standard deviations is +-50.
  EXPECT_NEAR(flipped, n / 2, 50);
}

TEST(TrainAugment, NoiseHasTheRequestedMoments) {
  const int64_t h = 64, w = 64;
  std::vector<uint8_t> img(std::size_t(h * w), 128);
  TrainAugment a = gl::data::parse_train_augment("noise:std=0.1");
  double s = 0, s2 = 0;
  const int reps = 4;
  for (int index = 0; index < reps; ++index) {
    auto out = run(img, 1, h, w, a, uint64_t(index));
    for (float v : out) {
      s += v - 128.0 / 255.0;
      s2 += (v - 128.0 / 255.0) * (v - 128.0 / 255.0);
    }
  }
  const double n = double(reps * h * w), mean = s / n, sd = std::sqrt(s2 / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 5 * 0.1 / std::sqrt(n));
  EXPECT_NEAR(sd, 0.1, 0.005);  // clamping at 0/1 is 5 sigma away
}

TEST(TrainAugment, IdentityParametersChangeNothingAndDrawsAreReproducible) {
  const int64_t c = 1, h = 12, w = 10;
  auto img = test_image(c, h, w);
  std::vector<float> plain(img.size());
  for (std::size_t i = 0; i < img.size(); ++i) plain[i] = float(img[i] / 255.0);
  EXPECT_EQ(run(img, c, h, w, gl::data::parse_train_augment("elastic:alpha=0"), 5), plain);
  auto ident = gl::data::parse_train_augment(
      "affine:rotation=0:translate=0:scale_min=1:scale_max=1:shear=0");
  auto out = run(img, c, h, w, ident, 9);
  for (std::size_t i = 0; i < plain.size(); ++i) EXPECT_NEAR(out[i], plain[i], 1e-6) << i;
  // Every transform at once: same (seed, index) -> same image; another index or seed differs.
  auto all = gl::data::parse_train_augment("affine,crop,flip,elastic,noise");
  auto x = run(img, c, h, w, all, 3), y = run(img, c, h, w, all, 3), z = run(img, c, h, w, all, 4);
  EXPECT_EQ(x, y);
  EXPECT_NE(x, z);
  all.seed = 1;
  EXPECT_NE(x, run(img, c, h, w, all, 3));
  for (float v : x) EXPECT_TRUE(v >= 0.0f && v <= 1.0f);
}

TEST(TrainAugment, ElasticMovesPixelsBySmoothSmallDisplacements) {
  // A horizontal ramp: a displacement (dx, dy) turns value x into x + dx, so the change of each
  // interior pixel is the field's x component: small (a few pixels) and smooth.
  const int64_t h = 28, w = 28;
  std::vector<uint8_t> img(std::size_t(h * w));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) img[std::size_t(y * w + x)] = uint8_t(x * 8);
  auto out = run(img, 1, h, w, gl::data::parse_train_augment("elastic:alpha=34:sigma=4"), 2);
  double moved = 0;
  int count = 0;
  for (int64_t y = 6; y < h - 6; ++y)
    for (int64_t x = 6; x < w - 6; ++x) {
      double d = (out[std::size_t(y * w + x)] * 255.0 - double(x * 8)) / 8.0;  // pixels
      EXPECT_LT(std::abs(d), 6.0);
      moved += std::abs(d);
      ++count;
      double right = (out[std::size_t(y * w + x + 1)] * 255.0 - double((x + 1) * 8)) / 8.0;
      EXPECT_LT(std::abs(right - d), 1.0) << "field not smooth at " << y << "," << x;
    }
  EXPECT_GT(moved / count, 0.1);  // it does move
}

TEST(TrainAugment, ParsingNamesTheBadPartAndStrRoundTrips) {
  auto expect_error = [](const std::string& list, const std::string& part) {
    try {
      gl::data::parse_train_augment(list);
      ADD_FAILURE() << list << " was accepted";
    } catch (const gl::Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error("rotate", "unknown augmentation 'rotate'");
  expect_error("crop,crop", "listed twice");
  expect_error("crop:pad=x", "pad=x is not a number");
  expect_error("crop:pad=1.5", "whole number");
  expect_error("noise:sd=1", "unknown parameter 'sd'");
  expect_error("affine:scale_min=2:scale_max=1", "scale_min <= scale_max");
  expect_error("elastic:sigma=0", "0 < sigma");
  // Once taken silently: a pad that overflowed to a negative integer (no crop at all), a key
  // given twice (the last won), empty items, and values that crop every image to black.
  expect_error("crop:pad=1e19", "from 0 to 1024");
  expect_error("affine:rotation=5:rotation=7", "rotation is given twice");
  expect_error("affine,", "ends with a comma");
  expect_error("affine,,crop", "has an empty item");
  expect_error(",flip", "has an empty item");
  expect_error("flip:", "ends with a ':'");
  expect_error("affine:translate=5", "translate is a fraction");
  expect_error("elastic:alpha=1e300", "alpha <= 10000");
  expect_error("affine:rotation=400", "within 180");
  expect_error("flip:p", "expected key=value");
  EXPECT_FALSE(gl::data::parse_train_augment("none").any());
  auto a = gl::data::parse_train_augment("noise:std=0.2,crop:pad=3,affine:rotation=5");
  EXPECT_EQ(gl::data::parse_train_augment(a.str()).str(), a.str());
  EXPECT_NE(a.str().find("crop:pad=3"), std::string::npos);
  EXPECT_NE(a.str().find("noise:std=0.2"), std::string::npos);
}

TEST(TrainAugment, LoaderBatchesAreTheAugmentedNormalizedImages) {
  gl::data::ImageDataset ds;
  ds.name = "synthetic";
  ds.n = 10;
  ds.channels = 1;
  ds.height = 6;
  ds.width = 5;
  ds.num_classes = 10;
  ds.images = test_image(1, 10 * 6, 5);
  ds.labels.resize(10);
  std::iota(ds.labels.begin(), ds.labels.end(), 0);
  gl::data::PixelStats stats{0.3, 0.2};
  gl::data::Loader loader(ds, gl::data::Normalization::standard, stats, 4, true, 5);
  TrainAugment a = gl::data::parse_train_augment("affine,crop:pad=1,noise");
  a.seed = 5;
  loader.set_augment(ds, a);
  for (int64_t epoch : {0, 3}) {
    loader.start_epoch(epoch);
    for (int64_t b = 0; b < loader.num_batches(); ++b) {
      auto batch = loader.batch(b);
      for (std::size_t i = 0; i < batch.indices.size(); ++i) {
        const int64_t idx = batch.indices[i];
        std::vector<float> want(30);
        gl::data::augment_train_image(ds.images.data() + idx * 30, 1, 6, 5, a,
                                      uint64_t(epoch * ds.n + idx), want.data());
        EXPECT_EQ(batch.labels.data<int64_t>()[i], idx);
        for (int64_t t = 0; t < 30; ++t)
          EXPECT_NEAR(batch.images.data<float>()[int64_t(i) * 30 + t], (want[t] - 0.3) / 0.2, 1e-5);
      }
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- cosine learning rate
namespace {

struct LrRecorder : gl::train::Callback {
  std::vector<double> lrs;
  void on_step_end(gl::train::Trainer& t, int64_t, double) override {
    lrs.push_back(t.optimizer().lr());
  }
};

TEST(LrSchedule, CosineFollowsTheClosedFormPerStep) {
  std::string dir = gl::testing::make_temp_dir("gl_cosine");
  gl::train::TrainConfig c;
  c.data_dir = gl::testing::fixture_data_dir();
  c.hidden = {16};
  c.batch_size = 100;
  c.epochs = 3;
  c.lr = 0.2;
  c.lr_schedule = "cosine";
  c.threads = 1;
  c.progress = false;
  c.out = dir + "/run";
  gl::train::Trainer t(c);
  auto rec = std::make_shared<LrRecorder>();
  t.add_callback(rec);
  t.run();
  const int64_t total = 3 * t.train_loader().num_batches();
  ASSERT_EQ(int64_t(rec->lrs.size()), total);
  for (int64_t s = 0; s < total; ++s)
    EXPECT_NEAR(rec->lrs[std::size_t(s)],
                0.2 * 0.5 * (1 + std::cos(M_PI * double(s) / double(total))), 1e-12)
        << "step " << s;
}

TEST(LrSchedule, ResumingACosineRunWithOtherEpochsIsRefused) {
  std::string dir = gl::testing::make_temp_dir("gl_cosine_resume");
  auto args = [&](const char* epochs, bool resume) {
    std::vector<std::string> a{"train",
                               "--data-dir",
                               gl::testing::fixture_data_dir(),
                               "--hidden",
                               "8",
                               "--epochs",
                               epochs,
                               "--lr-schedule",
                               "cosine",
                               "--no-progress",
                               "--out",
                               dir + "/run"};
    if (resume) a.push_back("--resume");
    return a;
  };
  auto first = gl::testing::run_gradlens(args("1", false));
  ASSERT_TRUE(first.exited && first.code == 0) << gl::testing::describe(first);
  auto again = gl::testing::run_gradlens(args("2", true));
  EXPECT_TRUE(again.exited && again.code != 0);
  EXPECT_NE(again.err.find("--lr-schedule cosine spans the run's 1 epochs"), std::string::npos)
      << again.err;
  auto bad = gl::testing::run_gradlens({"train", "--data-dir", gl::testing::fixture_data_dir(),
                                        "--lr-schedule", "linear", "--out", dir + "/bad"});
  EXPECT_NE(bad.err.find("--lr-schedule: unknown schedule 'linear'"), std::string::npos) << bad.err;
}

}  // namespace
