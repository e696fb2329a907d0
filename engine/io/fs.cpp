// fs.cpp: POSIX implementation of whole-file reads and atomic writes (temp + fsync + rename).
#include "engine/io/fs.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace gl::io {
namespace {

std::runtime_error sys_error(const std::string& what, const std::string& path) {
  return std::runtime_error(fmt::format("{} '{}': {}", what, path, std::strerror(errno)));
}

std::string parent_dir(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

std::vector<uint8_t> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw sys_error("cannot open", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw sys_error("cannot stat", path);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(fmt::format("cannot read '{}': it is a directory", path));
  }
  std::vector<uint8_t> bytes;
  bytes.reserve(static_cast<size_t>(st.st_size));
  uint8_t chunk[1 << 16];
  for (;;) {
    ssize_t got = ::read(fd, chunk, sizeof chunk);
    if (got < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      throw sys_error("cannot read", path);
    }
    if (got == 0) break;
    bytes.insert(bytes.end(), chunk, chunk + got);
  }
  ::close(fd);
  return bytes;
}

namespace {

// A temporary next to `path` (so rename() never crosses filesystems), written in full and given
// the usual permissions; open, not yet synced.
struct TempFile {
  std::string path, tmp;
  int fd = -1;
};

[[noreturn]] void fail_temp(TempFile& f, const char* what) {
  int saved = errno;
  if (f.fd >= 0) ::close(f.fd);
  ::unlink(f.tmp.c_str());
  f.fd = -1;
  errno = saved;
  throw sys_error(what, f.path);
}

TempFile write_temp(const std::string& path, std::span<const uint8_t> bytes) {
  if (path.empty()) throw std::runtime_error("write_file_atomic: empty path");
  std::string tmpl = path + ".tmp.XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  TempFile f{path, "", ::mkstemp(name.data())};
  if (f.fd < 0) throw sys_error("cannot create a temporary file next to", path);
  f.tmp = name.data();
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t put = ::write(f.fd, bytes.data() + done, bytes.size() - done);
    if (put < 0) {
      if (errno == EINTR) continue;
      fail_temp(f, "cannot write");
    }
    done += static_cast<size_t>(put);
  }
  // mkstemp creates 0600; give the file the usual permissions a plain create would.
  mode_t mask = ::umask(0);
  ::umask(mask);
  if (::fchmod(f.fd, 0666 & ~mask) != 0) fail_temp(f, "cannot chmod");
  return f;
}

// Makes the temporary's contents durable (unless `synced` says they already are), closes it
// and renames it over its target.
void sync_and_rename(TempFile& f, bool synced = false) {
  if (!synced && ::fsync(f.fd) != 0) fail_temp(f, "cannot fsync");
  if (::close(f.fd) != 0) {
    f.fd = -1;
    ::unlink(f.tmp.c_str());
    throw sys_error("cannot close", f.path);
  }
  f.fd = -1;
  if (::rename(f.tmp.c_str(), f.path.c_str()) != 0) {
    int saved = errno;
    ::unlink(f.tmp.c_str());
    errno = saved;
    throw sys_error("cannot rename temporary file onto", f.path);
  }
}

// Persists the directory entries; failure is not fatal (some filesystems refuse).
void sync_dir(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace

void write_file_atomic(const std::string& path, std::span<const uint8_t> bytes) {
  TempFile f = write_temp(path, bytes);
  sync_and_rename(f);
  sync_dir(parent_dir(path));
}

void AtomicWriteBatch::add(std::string path, std::vector<uint8_t> bytes) {
  files_.emplace_back(std::move(path), std::move(bytes));
}

void AtomicWriteBatch::add(std::string path, std::string_view bytes) {
  add(std::move(path), std::vector<uint8_t>(bytes.begin(), bytes.end()));
}

void AtomicWriteBatch::commit() {
  std::vector<TempFile> temps;
  temps.reserve(files_.size());
  try {
    for (auto& [path, bytes] : files_) temps.push_back(write_temp(path, bytes));
    // Every temporary is written; when they share one file system, a single syncfs makes them
    // all durable in one journal commit (an fsync per file costs a commit each). Only then is
    // anything renamed, so a crash leaves each target old or new, never partial.
    bool synced = false;
#ifdef __linux__
    if (!temps.empty()) {
      bool same_fs = true;
      struct stat first {};
      if (::fstat(temps[0].fd, &first) != 0) same_fs = false;
      for (std::size_t i = 1; i < temps.size() && same_fs; ++i) {
        struct stat st {};
        same_fs = ::fstat(temps[i].fd, &st) == 0 && st.st_dev == first.st_dev;
      }
      synced = same_fs && ::syncfs(temps[0].fd) == 0;
    }
#endif
    std::vector<std::string> dirs;
    for (auto& f : temps) {
      sync_and_rename(f, synced);
      std::string d = parent_dir(f.path);
      if (std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
    }
    for (auto& d : dirs) sync_dir(d);
  } catch (...) {
    for (auto& f : temps)
      if (f.fd >= 0) {
        ::close(f.fd);
        ::unlink(f.tmp.c_str());
      }
    files_.clear();
    throw;
  }
  files_.clear();
}

BackgroundWriter::~BackgroundWriter() {
  try {
    wait();
  } catch (...) {  // a destructor must not throw; wait() reports errors to callers that ask
  }
}

void BackgroundWriter::submit(AtomicWriteBatch batch) {
  wait();
  pending_ = std::async(std::launch::async, [b = std::move(batch)]() mutable { b.commit(); });
}

void BackgroundWriter::wait() {
  if (pending_.valid()) pending_.get();  // get() leaves the future empty, even when it throws
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  write_file_atomic(
      path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

void ensure_dir(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return;
  if (std::filesystem::exists(path, ec))
    throw std::runtime_error(
        fmt::format("cannot create directory '{}': a file is in the way", path));
  std::filesystem::create_directories(path, ec);
  if (ec)
    throw std::runtime_error(fmt::format("cannot create directory '{}': {}", path, ec.message()));
}

bool is_atomic_temporary(const std::string& name) {
  const auto at = name.rfind(".tmp.");
  // mkstemp's six characters after ".tmp."
  return at != std::string::npos && at > 0 && name.size() == at + 5 + 6;
}

int remove_stale_temporaries(const std::string& dir, const std::vector<std::string>& subdirs) {
  namespace fs = std::filesystem;
  std::vector<fs::path> stale;
  auto consider = [&stale](const fs::directory_entry& e) {
    std::error_code ec;
    if (is_atomic_temporary(e.path().filename().string()) && e.is_regular_file(ec))
      stale.push_back(e.path());
  };
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::end(it); it.increment(ec))
    consider(*it);
  for (const auto& sub : subdirs) {
    const fs::path d = fs::path(dir) / sub;
    if (!fs::is_directory(d, ec)) continue;
    for (auto it = fs::recursive_directory_iterator(d, ec); !ec && it != fs::end(it);
         it.increment(ec))
      consider(*it);
  }
  int removed = 0;
  for (const auto& p : stale) removed += fs::remove(p, ec) ? 1 : 0;
  return removed;
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

}  // namespace gl::io
