// test_io.cpp: atomic file I/O, safetensors and npy: round trips, byte-exact agreement with the
// reference safetensors implementation's own test vectors, every corruption the readers must
// reject, and cross-checks with numpy / torch through /usr/bin/python3 when available; JSON
// values read with errors that name the file and the key.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "engine/io/fs.h"
#include "engine/io/json_file.h"
#include "engine/io/npy.h"
#include "engine/io/safetensors.h"

namespace fs = std::filesystem;
using gl::io::NamedBuffer;

namespace {

std::string temp_dir() {
  static std::string dir = [] {
    std::string tmpl = (fs::temp_directory_path() / "gl_test_io_XXXXXX").string();
    return std::string(mkdtemp(tmpl.data()));
  }();
  return dir;
}
std::string temp_path(const std::string& name) {
  return (fs::path(temp_dir()) / name).string();
}

template <typename T>
std::vector<uint8_t> to_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// Expects `fn` to throw a std::exception whose message contains every one of `needles`.
void expect_error(const std::function<void()>& fn, std::vector<std::string> needles) {
  try {
    fn();
  } catch (const std::exception& e) {
    std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "message: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one-line message: " << msg;
    return;
  }
  ADD_FAILURE() << "no exception";
}

void write_raw(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors file from a literal header and buffer, for crafting corrupt files.
std::vector<uint8_t> craft(const std::string& header, const std::vector<uint8_t>& buffer) {
  std::vector<uint8_t> out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), buffer.begin(), buffer.end());
  return out;
}

bool python_has(const std::string& module) {
  if (access("/usr/bin/python3", X_OK) != 0) return false;
  std::string cmd = "/usr/bin/python3 -c 'import " + module + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

int run_python(const std::string& script) {
  std::string path = temp_path("check.py");
  std::ofstream(path) << script;
  std::string cmd = "/usr/bin/python3 " + path;
  return std::system(cmd.c_str());
}

}  // namespace

TEST(Fs, AtomicWriteRoundTripAndOverwrite) {
  std::string p = temp_path("a.bin");
  std::vector<uint8_t> data(100000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 3);
  gl::io::write_file_atomic(p, data);
  EXPECT_EQ(gl::io::read_file(p), data);
  gl::io::write_file_atomic(p, std::string_view("short"));
  auto back = gl::io::read_file(p);
  EXPECT_EQ(std::string(back.begin(), back.end()), "short");
  for (const auto& entry : fs::directory_iterator(temp_dir()))
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos)
        << "temporary left behind: " << entry.path();
}

// What a killed atomic write leaves (NAME.tmp.XXXXXX) is removed from the directory and the
// named subdirectories; files that only look similar stay, and so does everything in other
// subdirectories (another run may be writing there).
TEST(Fs, StaleTemporariesAreRemoved) {
  const fs::path d = fs::path(temp_path("stale"));
  fs::create_directories(d / "diagnostics" / "deeper");
  fs::create_directories(d / "runs" / "other");
  const std::vector<std::string> stale{"metrics.csv.tmp.Ab12Cd", "diagnostics/units.csv.tmp.zzzzzz",
                                       "diagnostics/deeper/a.npy.tmp.123456"};
  const std::vector<std::string> kept{"metrics.csv",           "notes.tmp.txt",
                                      "x.tmp.short",           ".tmp.abcdef",
                                      "diagnostics/units.csv", "runs/other/metrics.csv.tmp.Ab12Cd",
                                      "runs/b.tmp.Ab12Cd"};
  for (const auto& f : stale) gl::io::write_file_atomic((d / f).string(), std::string_view("s"));
  for (const auto& f : kept) gl::io::write_file_atomic((d / f).string(), std::string_view("k"));
  EXPECT_EQ(gl::io::remove_stale_temporaries(d.string(), {"diagnostics", "analysis"}), 3);
  for (const auto& f : stale) EXPECT_FALSE(fs::exists(d / f)) << f;
  for (const auto& f : kept) EXPECT_TRUE(fs::exists(d / f)) << f;
  EXPECT_EQ(gl::io::remove_stale_temporaries((d / "absent").string(), {}), 0);
}

TEST(Fs, ErrorsNameThePath) {
  expect_error([] { gl::io::read_file(temp_path("missing.bin")); }, {"missing.bin", "cannot open"});
  expect_error(
      [] { gl::io::write_file_atomic(temp_path("no/such/dir/x.bin"), std::string_view("x")); },
      {"no/such/dir/x.bin"});
  expect_error([] { gl::io::read_file(temp_dir()); }, {"directory"});
}

TEST(Fs, AtomicWriteBatchWritesEveryFileAndCleansUp) {
  const std::string dir = temp_path("batch"), sub = temp_path("batch/sub");
  gl::io::ensure_dir(sub);
  gl::io::write_file_atomic(dir + "/old.txt", std::string_view("old contents"));
  std::vector<uint8_t> big(70000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 13 + 1);
  gl::io::AtomicWriteBatch batch;
  EXPECT_TRUE(batch.empty());
  batch.add(dir + "/old.txt", std::string_view("new"));
  batch.add(dir + "/big.bin", big);
  batch.add(sub + "/empty.txt", std::string_view(""));
  EXPECT_FALSE(batch.empty());
  batch.commit();
  EXPECT_TRUE(batch.empty());
  auto txt = gl::io::read_file(dir + "/old.txt");
  EXPECT_EQ(std::string(txt.begin(), txt.end()), "new");
  EXPECT_EQ(gl::io::read_file(dir + "/big.bin"), big);
  EXPECT_TRUE(gl::io::read_file(sub + "/empty.txt").empty());
  // A file that cannot be written fails the batch naming it, and leaves no temporary behind.
  batch.add(dir + "/old.txt", std::string_view("newer"));
  batch.add(dir + "/missing/x.bin", std::string_view("x"));
  expect_error([&] { batch.commit(); }, {"missing/x.bin"});
  EXPECT_TRUE(batch.empty());
  txt = gl::io::read_file(dir + "/old.txt");
  EXPECT_EQ(std::string(txt.begin(), txt.end()), "new");  // nothing renamed before the failure
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos)
        << "temporary left behind: " << entry.path();
}

TEST(Fs, BackgroundWriterCommitsInOrderAndReportsErrors) {
  const std::string dir = temp_path("bg");
  gl::io::ensure_dir(dir);
  gl::io::BackgroundWriter w;
  for (int i = 0; i < 5; ++i) {  // each batch replaces the file the one before wrote
    gl::io::AtomicWriteBatch b;
    b.add(dir + "/f.txt", std::string_view(std::to_string(i)));
    b.add(dir + "/g" + std::to_string(i) + ".txt", std::string_view("x"));
    w.submit(std::move(b));
  }
  w.wait();
  auto f = gl::io::read_file(dir + "/f.txt");
  EXPECT_EQ(std::string(f.begin(), f.end()), "4");
  for (int i = 0; i < 5; ++i)
    EXPECT_TRUE(gl::io::file_exists(dir + "/g" + std::to_string(i) + ".txt"));
  gl::io::AtomicWriteBatch bad;
  bad.add(dir + "/missing/x.bin", std::string_view("x"));
  w.submit(std::move(bad));
  expect_error([&] { w.wait(); }, {"missing/x.bin"});
  w.wait();  // the error is reported once
}

TEST(Fs, EnsureDir) {
  std::string nested = temp_path("d1/d2/d3");
  gl::io::ensure_dir(nested);
  EXPECT_TRUE(fs::is_directory(nested));
  gl::io::ensure_dir(nested);  // idempotent
  std::string file = temp_path("plainfile");
  gl::io::write_file_atomic(file, std::string_view("x"));
  expect_error([&] { gl::io::ensure_dir(file); }, {"plainfile", "in the way"});
}

// Byte vectors from the reference implementation's tests (huggingface/safetensors,
// safetensors/src/tensor.rs: test_serialization, test_serialization_forced_alignement, test_empty).
TEST(Safetensors, MatchesReferenceSerializationBytes) {
  std::vector<float> values{0, 1, 2, 3, 4, 5};
  std::vector<uint8_t> expected1{
      64, 0,  0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 46,  48,
      34, 58, 123, 34,  100, 116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,
      44, 34, 115, 104, 97,  112, 101, 34,  58,  91,  49,  44,  50,  44,  51,  93,
      44, 34, 100, 97,  116, 97,  95,  111, 102, 102, 115, 101, 116, 115, 34,  58,
      91, 48, 44,  50,  52,  93,  125, 125, 0,   0,   0,   0,   0,   0,   128, 63,
      0,  0,  0,   64,  0,   0,   64,  64,  0,   0,   128, 64,  0,   0,   160, 64};
  EXPECT_EQ(gl::io::serialize_safetensors({{"attn.0", "F32", {1, 2, 3}, to_bytes(values)}}),
            expected1);
  std::vector<uint8_t> expected2{
      72,  0,   0,   0,   0,   0,   0,   0,   123, 34, 97, 116, 116, 110, 48,  34,  58,  123,
      34,  100, 116, 121, 112, 101, 34,  58,  34,  70, 51, 50,  34,  44,  34,  115, 104, 97,
      112, 101, 34,  58,  91,  49,  44,  49,  44,  50, 44, 51,  93,  44,  34,  100, 97,  116,
      97,  95,  111, 102, 102, 115, 101, 116, 115, 34, 58, 91,  48,  44,  50,  52,  93,  125,
      125, 32,  32,  32,  32,  32,  32,  32,  0,   0,  0,  0,   0,   0,   128, 63,  0,   0,
      0,   64,  0,   0,   64,  64,  0,   0,   128, 64, 0,  0,   160, 64};
  EXPECT_EQ(gl::io::serialize_safetensors({{"attn0", "F32", {1, 1, 2, 3}, to_bytes(values)}}),
            expected2);
  EXPECT_EQ(gl::io::serialize_safetensors({}),
            (std::vector<uint8_t>{8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32}));
  std::vector<uint8_t> expected_meta{40,  0,   0,   0,   0,   0,   0,   0,   123, 34,  95,  95,
                                     109, 101, 116, 97,  100, 97,  116, 97,  95,  95,  34,  58,
                                     123, 34,  102, 114, 97,  109, 101, 119, 111, 114, 107, 34,
                                     58,  34,  112, 116, 34,  125, 125, 32,  32,  32,  32,  32};
  EXPECT_EQ(gl::io::serialize_safetensors({}, {{"framework", "pt"}}), expected_meta);
}

std::vector<NamedBuffer> sample_entries() {
  std::vector<float> w(12);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.5f * static_cast<float>(i) - 2.0f;
  std::vector<double> d{1.0 / 3.0, -2.5, 1e300};
  std::vector<int64_t> l{-1, 0, 1LL << 40};
  std::vector<uint8_t> u{1, 2, 3, 250, 251};
  std::vector<int32_t> i32{-7, 7};
  return {{"layer.weight", "F32", {3, 4}, to_bytes(w)},
          {"b.labels", "I64", {3}, to_bytes(l)},
          {"pixels", "U8", {5}, u},
          {"a.double", "F64", {3}, to_bytes(d)},
          {"counts", "I32", {2}, to_bytes(i32)},
          {"scalar", "F32", {}, to_bytes(std::vector<float>{42.0f})},
          {"empty", "F32", {0, 3}, {}}};
}

TEST(Safetensors, RoundTripWithAlignmentAndMetadata) {
  auto entries = sample_entries();
  std::string p = temp_path("rt.safetensors");
  gl::io::save_safetensors(p, entries, {{"format", "pt"}, {"epoch", "3"}});
  auto file = gl::io::read_file(p);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{file[i]} << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  auto loaded = gl::io::load_safetensors(p);
  EXPECT_EQ(loaded.metadata.at("format"), "pt");
  EXPECT_EQ(loaded.metadata.at("epoch"), "3");
  ASSERT_EQ(loaded.tensors.size(), entries.size());
  size_t offset = 8 + n;
  for (const auto& t : loaded.tensors) {
    // Every tensor starts aligned to its element size within the file.
    EXPECT_EQ(offset % gl::io::safetensors_dtype_size(t.dtype), 0u) << t.name;
    offset += t.bytes.size();
    auto it =
        std::find_if(entries.begin(), entries.end(), [&](auto& e) { return e.name == t.name; });
    ASSERT_NE(it, entries.end());
    EXPECT_EQ(t.dtype, it->dtype);
    EXPECT_EQ(t.shape, it->shape);
    EXPECT_EQ(t.bytes, it->bytes);
  }
  // Reference order: descending dtype alignment, then name.
  std::vector<std::string> names;
  for (const auto& t : loaded.tensors) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"b.labels", "a.double", "empty", "layer.weight",
                                             "scalar", "counts", "pixels"}));
}

TEST(Safetensors, SaveRejectsBadEntries) {
  std::string p = temp_path("bad_save.safetensors");
  expect_error(
      [&] {
        gl::io::save_safetensors(p, {{"x", "F32", {3}, std::vector<uint8_t>(8)}});
      },
      {"bad_save.safetensors", "'x'", "needs 12 bytes"});
  expect_error([&] { gl::io::save_safetensors(p, {{"x", "F17", {1}, {0}}}); }, {"F17"});
  expect_error(
      [&] {
        gl::io::save_safetensors(p, {{"x", "U8", {1}, {0}}, {"x", "U8", {1}, {0}}});
      },
      {"duplicate", "'x'"});
  EXPECT_FALSE(fs::exists(p));
}

TEST(Safetensors, TruncationAtEveryRegionIsRejected) {
  auto good = gl::io::serialize_safetensors(sample_entries());
  std::string p = temp_path("trunc.safetensors");
  for (size_t cut :
       {size_t{0}, size_t{4}, size_t{7}, size_t{8}, size_t{20}, good.size() / 2, good.size() - 1}) {
    write_raw(p, std::vector<uint8_t>(good.begin(), good.begin() + static_cast<long>(cut)));
    expect_error([&] { gl::io::load_safetensors(p); }, {"trunc.safetensors"});
  }
  write_raw(p, std::vector<uint8_t>(good.begin(), good.begin() + 4));
  expect_error([&] { gl::io::load_safetensors(p); }, {"too short"});
  write_raw(p, std::vector<uint8_t>(good.begin(), good.begin() + 20));
  expect_error([&] { gl::io::load_safetensors(p); }, {"header length", "exceeds"});
  write_raw(p, std::vector<uint8_t>(good.begin(), good.end() - 1));
  expect_error([&] { gl::io::load_safetensors(p); }, {"trunc.safetensors", "out of range"});
}

TEST(Safetensors, CorruptHeadersAreRejectedWithTheProblemNamed) {
  std::string p = temp_path("corrupt.safetensors");
  std::vector<uint8_t> buf16(16, 0);
  auto check = [&](const std::string& header, const std::vector<uint8_t>& buffer,
                   std::vector<std::string> needles) {
    write_raw(p, craft(header, buffer));
    needles.push_back("corrupt.safetensors");
    expect_error([&] { gl::io::load_safetensors(p); }, needles);
  };
  // The same header is valid with the right buffer, so each failure below is due to its edit.
  write_raw(p, craft(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                     buf16));
  EXPECT_EQ(gl::io::load_safetensors(p).tensors.size(), 2u);

  check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)", buf16, {"invalid JSON"});
  check(R"([1,2,3])", {}, {"not a JSON object"});
  check(R"({"a":{"dtype":"F17","shape":[4],"data_offsets":[0,16]}})", buf16,
        {"unknown dtype", "F17", "'a'"});
  check(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", buf16,
        {"'a'", "needs 12 bytes", "span 16"});
  check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
        std::vector<uint8_t>(12), {"overlapping", "'a'", "'b'"});
  check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
        std::vector<uint8_t>(8), {"out of range", "'b'"});
  check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
        buf16, {"not contiguous", "'b'"});
  check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", buf16,
        {"not contiguous", "8 trailing bytes"});
  check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
        buf16, {"duplicate", "'a'"});
  check(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})", buf16, {"'a'", "end before"});
  check(R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", buf16, {"'a'", "shape"});
  check(R"({"a":{"dtype":"F32","data_offsets":[0,16]}})", buf16, {"'a'", "missing", "shape"});
  check(R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", buf16,
        {"__metadata__", "'k'"});
  check(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}})",
        buf16, {"'a'", "overflows"});
  // A header length far beyond the file.
  auto huge = craft("{}", {});
  huge[5] = 1;
  write_raw(p, huge);
  expect_error([&] { gl::io::load_safetensors(p); }, {"corrupt.safetensors", "header length"});
}

TEST(Safetensors, TorchOrIndependentPythonReaderAgrees) {
  if (!python_has("numpy")) GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  std::string p = temp_path("py.safetensors");
  gl::io::save_safetensors(p, sample_entries(), {{"format", "pt"}});
  // Prefer the real loader; otherwise an independent reader of the format written from the spec.
  std::string loader = python_has("safetensors.torch")
                           ? "from safetensors.torch import load_file\nt = {k: v.numpy() for k, "
                             "v in load_file(path).items()}\n"
                           : R"(import json, struct
raw = open(path, 'rb').read()
n, = struct.unpack('<Q', raw[:8])
assert n % 8 == 0, n
hdr = json.loads(raw[8:8 + n].decode('utf-8'))
assert hdr.pop('__metadata__') == {'format': 'pt'}
kinds = {'F32': '<f4', 'F64': '<f8', 'I64': '<i8', 'I32': '<i4', 'U8': 'u1'}
t = {}
for k, v in hdr.items():
    s, e = v['data_offsets']
    dt = np.dtype(kinds[v['dtype']])
    assert (8 + n + s) % dt.itemsize == 0, k
    t[k] = np.frombuffer(raw[8 + n + s: 8 + n + e], dtype=dt).reshape(v['shape'])
)";
  std::string script = "import numpy as np\npath = '" + p + "'\n" + loader + R"(
exp = {
  'layer.weight': (0.5 * np.arange(12, dtype=np.float32) - 2).reshape(3, 4),
  'b.labels': np.array([-1, 0, 1 << 40], dtype=np.int64),
  'pixels': np.array([1, 2, 3, 250, 251], dtype=np.uint8),
  'a.double': np.array([1.0 / 3.0, -2.5, 1e300]),
  'counts': np.array([-7, 7], dtype=np.int32),
  'scalar': np.array(42.0, dtype=np.float32),
  'empty': np.zeros((0, 3), dtype=np.float32),
}
assert sorted(t) == sorted(exp), sorted(t)
for k in exp:
    assert t[k].dtype == exp[k].dtype and t[k].shape == exp[k].shape, (k, t[k].dtype, t[k].shape)
    assert np.array_equal(t[k], exp[k]), k
)";
  EXPECT_EQ(run_python(script), 0);
}

TEST(Npy, RoundTripAllDtypes) {
  std::vector<gl::io::NpyArray> arrays{
      {"F32", {2, 3}, to_bytes(std::vector<float>{1.5f, -2, 3, 4, 5, 6})},
      {"F64", {3}, to_bytes(std::vector<double>{0.1, 0.2, 0.3})},
      {"I64", {1, 2}, to_bytes(std::vector<int64_t>{-5, 1LL << 50})},
      {"I32", {2, 1, 1}, to_bytes(std::vector<int32_t>{-1, 9})},
      {"U8", {4}, {0, 1, 254, 255}},
      {"F32", {}, to_bytes(std::vector<float>{7})},
      {"F64", {0, 4}, {}},
  };
  for (size_t i = 0; i < arrays.size(); ++i) {
    std::string p = temp_path("rt" + std::to_string(i) + ".npy");
    gl::io::save_npy(p, arrays[i]);
    auto raw = gl::io::read_file(p);
    size_t header = 10 + (raw[8] | (raw[9] << 8));
    EXPECT_EQ(header % 64, 0u);
    EXPECT_EQ(raw[header - 1], '\n');
    auto back = gl::io::load_npy(p);
    EXPECT_EQ(back.dtype, arrays[i].dtype);
    EXPECT_EQ(back.shape, arrays[i].shape);
    EXPECT_EQ(back.bytes, arrays[i].bytes);
  }
}

TEST(Npy, CorruptFilesAreRejected) {
  std::string p = temp_path("bad.npy");
  auto good = gl::io::serialize_npy({"F32", {2, 3}, std::vector<uint8_t>(24)});
  auto with = [&](std::vector<uint8_t> bytes, std::vector<std::string> needles) {
    write_raw(p, bytes);
    needles.push_back("bad.npy");
    expect_error([&] { gl::io::load_npy(p); }, needles);
  };
  auto flipped = good;
  flipped[1] = 'X';
  with(flipped, {"magic"});
  with(std::vector<uint8_t>(good.begin(), good.begin() + 9), {});
  with(std::vector<uint8_t>(good.begin(), good.begin() + 40), {"header length"});
  with(std::vector<uint8_t>(good.begin(), good.end() - 1), {"truncated"});
  auto extra = good;
  extra.push_back(0);
  with(extra, {"trailing"});
  auto version = good;
  version[6] = 9;
  with(version, {"version 9"});
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s(good.begin(), good.end());
    s.replace(s.find(from), from.size(), to);
    return std::vector<uint8_t>(s.begin(), s.end());
  };
  with(replace("<f4", ">f4"), {"unsupported dtype", ">f4"});
  with(replace("False", "True "), {"Fortran"});
  with(replace("(2, 3)", "(2, x)"), {"shape"});
  expect_error([&] { gl::io::save_npy(p, {"F16", {1}, {0, 0}}); }, {"F16"});
  expect_error([&] { gl::io::save_npy(p, {"F32", {2}, {0, 0}}); }, {"needs 8 bytes"});
}

TEST(Npy, NumpyReadsOursAndWeReadNumpys) {
  if (!python_has("numpy")) GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  std::vector<float> f(24);
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(i) * 0.25f - 1.0f;
  gl::io::save_npy(temp_path("ours_f32.npy"), {"F32", {2, 3, 4}, to_bytes(f)});
  gl::io::save_npy(temp_path("ours_i64.npy"),
                   {"I64", {3}, to_bytes(std::vector<int64_t>{-3, 0, 1LL << 45})});
  gl::io::save_npy(temp_path("ours_u8.npy"), {"U8", {2, 2}, {0, 7, 128, 255}});
  std::string script = "import numpy as np, os\nd = '" + temp_dir() + R"('
a = np.load(os.path.join(d, 'ours_f32.npy'))
assert a.dtype == np.float32 and a.shape == (2, 3, 4)
assert np.array_equal(a, (np.arange(24, dtype=np.float32) * 0.25 - 1).reshape(2, 3, 4))
b = np.load(os.path.join(d, 'ours_i64.npy'))
assert b.dtype == np.int64 and list(b) == [-3, 0, 1 << 45]
c = np.load(os.path.join(d, 'ours_u8.npy'))
assert c.dtype == np.uint8 and c.tolist() == [[0, 7], [128, 255]]
np.save(os.path.join(d, 'theirs_f64.npy'), np.arange(6, dtype=np.float64).reshape(3, 2) / 7)
np.save(os.path.join(d, 'theirs_i32.npy'), np.array([5, -6, 7], dtype=np.int32))
np.save(os.path.join(d, 'theirs_scalar.npy'), np.float32(2.5))
)";
  ASSERT_EQ(run_python(script), 0);
  auto a = gl::io::load_npy(temp_path("theirs_f64.npy"));
  ASSERT_EQ(a.dtype, "F64");
  ASSERT_EQ(a.shape, (std::vector<int64_t>{3, 2}));
  std::vector<double> got(6);
  std::memcpy(got.data(), a.bytes.data(), 48);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(got[i], i / 7.0);
  auto b = gl::io::load_npy(temp_path("theirs_i32.npy"));
  ASSERT_EQ(b.dtype, "I32");
  std::vector<int32_t> gi(3);
  std::memcpy(gi.data(), b.bytes.data(), 12);
  EXPECT_EQ(gi, (std::vector<int32_t>{5, -6, 7}));
  auto c = gl::io::load_npy(temp_path("theirs_scalar.npy"));
  EXPECT_TRUE(c.shape.empty());
  float s;
  std::memcpy(&s, c.bytes.data(), 4);
  EXPECT_EQ(s, 2.5f);
}

// nlohmann's get<> truncates 2.5 to 2, wraps -1 into an unsigned and reports a wrong type
// without the file or the key; JsonReader refuses each, naming both.
TEST(JsonReader, WrongTypesAndValuesNameTheFileAndTheKey) {
  const nlohmann::json j = nlohmann::json::parse(
      R"({"n": "12", "half": 2.5, "huge": 1e30, "whole": 3.0, "list": [1, "x"],
          "nested": {"flags": [true]}, "negative": -1, "top": 18446744073709551615})");
  const gl::io::JsonReader r(j, "run/file.json");
  const std::string int64_range = "from -9223372036854775808 to 9223372036854775807";
  expect_error([&] { r["n"].get<int64_t>(); },
               {"run/file.json: key 'n': expected a whole number " + int64_range + ", got \"12\""});
  expect_error([&] { r["half"].get<int>(); },
               {"run/file.json: key 'half': expected a whole number, got 2.5"});
  expect_error(
      [&] { r["huge"].get<int>(); },
      {"run/file.json: key 'huge': expected a whole number from -2147483648 to 2147483647, "
       "got 1e+30"});
  expect_error([&] { r["negative"].get<uint64_t>(); },
               {"run/file.json: key 'negative': expected a whole number from 0 to "
                "18446744073709551615, got -1"});
  expect_error([&] { r["top"].get<int64_t>(); },
               {"run/file.json: key 'top': expected a whole number " + int64_range +
                ", got 18446744073709551615"});
  expect_error(
      [&] { r["list"].get<std::vector<int64_t>>(); },
      {"run/file.json: key 'list[1]': expected a whole number " + int64_range + ", got \"x\""});
  expect_error([&] { r["nested"]["flags"][0].get<std::string>(); },
               {"run/file.json: key 'nested.flags[0]': expected a string, got true"});
  expect_error([&] { r["nested"]["flags"].get<std::map<std::string, bool>>(); },
               {"run/file.json: key 'nested.flags': expected an object, got [true]"});
  expect_error([&] { r["nested"]["flags"][1]; },
               {"run/file.json: key 'nested.flags': expected at least 2 elements, got [true]"});
  expect_error([&] { r["n"].get<double>(); },
               {"run/file.json: key 'n': expected a number, got \"12\""});
  expect_error([&] { r["whole"].get<bool>(); },
               {"run/file.json: key 'whole': expected true or false, got 3.0"});
  expect_error([&] { r["absent"]; }, {"run/file.json: key 'absent': missing"});
  expect_error([&] { r.get("n", 0); },
               {"run/file.json: key 'n': expected a whole number from -2147483648 to 2147483647, "
                "got \"12\""});
  const nlohmann::json array = nlohmann::json::parse("[1, 2]");
  expect_error([&] { gl::io::JsonReader(array, "a.json")["k"]; },
               {"a.json: expected an object, got [1,2]"});
  // Values of the right type, and a member that is absent, read as they should.
  EXPECT_EQ(r["whole"].get<int>(), 3);
  EXPECT_EQ(r["top"].get<uint64_t>(), 18446744073709551615ull);
  EXPECT_EQ(r["half"].get<double>(), 2.5);
  EXPECT_EQ(r.get("absent", 7), 7);
  EXPECT_EQ(r.get("n", std::string()), "12");
  EXPECT_EQ(r["nested"]["flags"].get<std::vector<bool>>(), std::vector<bool>{true});
}

// Arrays and objects nested past 128 levels are refused before parsing, naming the file, the
// line and the column of the bracket that goes past: the documents' recursive walks (dump,
// comparisons, the report's flattening of config.json) would otherwise exhaust the stack.
// Brackets inside strings do not nest.
TEST(JsonNesting, DeepDocumentsAreRefusedNamingTheFileAndWhere) {
  auto nested = [](int levels) {
    return std::string(size_t(levels), '[') + std::string(size_t(levels), ']');
  };
  EXPECT_NO_THROW(gl::io::check_json_nesting(nested(128), "f.json"));
  expect_error([&] { gl::io::check_json_nesting(nested(129), "f.json"); },
               {"f.json:1:129: arrays and objects nested more than 128 deep"});
  expect_error([&] { gl::io::check_json_nesting("{\"a\":\n  " + nested(100000), "f.json"); },
               {"f.json:2:130: arrays and objects nested more than 128 deep"});
  EXPECT_NO_THROW(gl::io::check_json_nesting("[\"" + std::string(1000, '[') + "\\\"[\"]", "f"));

  const std::string path = temp_path("deep.json");
  std::string deep = "{\"hidden\": [16], \"x\": ";
  for (int k = 0; k < 20000; ++k) deep += "{\"a\": ";
  deep += "1" + std::string(20000, '}') + "}";
  write_raw(path, std::vector<uint8_t>(deep.begin(), deep.end()));
  expect_error([&] { gl::io::read_json_file(path); }, {path + ":1:", "nested more than 128"});
  expect_error([&] { gl::io::read_ordered_json_file(path); }, {path + ":1:", "nested"});
  nlohmann::json out;
  EXPECT_NE(gl::io::read_json_object_file(path, out).find("nested more than 128 deep"),
            std::string::npos);
  EXPECT_TRUE(out.is_null());
  expect_error([&] { gl::io::parse_json(nested(1000), "meta"); }, {"meta:1:129"});
}

// A value quoted in a message is shortened to about 80 characters.
TEST(JsonNesting, LongValuesAreShortenedInMessages) {
  const nlohmann::json long_value =
      nlohmann::json::parse(std::string(100, '[') + std::string(100, ']'));
  const std::string text = gl::io::json_text(long_value);
  EXPECT_EQ(text, std::string(76, '[') + " ...");
  EXPECT_EQ(gl::io::json_text(nlohmann::json("short")), "\"short\"");
}
