// fs.h: whole-file reads and atomic whole-file writes. Every file gradlens writes goes through
// write_file_atomic, so a killed process leaves either the old file or the new one, never half.
#pragma once
#include <cstdint>
#include <future>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gl::io {

// Reads the whole file; throws std::runtime_error naming the path when it cannot.
std::vector<uint8_t> read_file(const std::string& path);

// Writes `bytes` to a temporary file in the same directory, fsyncs it, renames it over `path`
// and fsyncs the directory. The parent directory must exist (see ensure_dir).
void write_file_atomic(const std::string& path, std::span<const uint8_t> bytes);
void write_file_atomic(const std::string& path, std::string_view bytes);

// Several atomic writes made durable together: commit() writes every temporary, makes them all
// durable (one syncfs of their file system on Linux; else an fsync each), then renames each
// over its target and fsyncs each directory once. A crash leaves every path either old or new
// and complete (a file is durable before its rename), as with write_file_atomic, at the cost
// of about two journal commits for the batch instead of two per file. Files are independent: a
// crash during commit may leave some new and some old.
class AtomicWriteBatch {
 public:
  void add(std::string path, std::vector<uint8_t> bytes);
  void add(std::string path, std::string_view bytes);
  // Throws naming the file that failed; the batch is empty afterwards either way.
  void commit();
  bool empty() const { return files_.empty(); }

 private:
  std::vector<std::pair<std::string, std::vector<uint8_t>>> files_;
};

// Commits batches on a background thread, one at a time and in order, so a training loop does
// not wait for the disk (on file systems that discard freed blocks, replacing a file costs
// milliseconds). submit() first waits for the previous batch and rethrows its error; wait()
// does the same for the last one. The destructor waits and drops any error (call wait() to
// see it).
class BackgroundWriter {
 public:
  BackgroundWriter() = default;
  BackgroundWriter(const BackgroundWriter&) = delete;
  BackgroundWriter& operator=(const BackgroundWriter&) = delete;
  ~BackgroundWriter();
  void submit(AtomicWriteBatch batch);
  void wait();

 private:
  std::future<void> pending_;
};

// Creates `path` and its missing parents; throws if it exists and is not a directory.
void ensure_dir(const std::string& path);

// Whether a file name is one of write_file_atomic's temporaries: NAME.tmp.XXXXXX.
bool is_atomic_temporary(const std::string& name);

// Removes the temporaries (NAME.tmp.XXXXXX) a killed write_file_atomic left in `dir` itself
// and anywhere under its subdirectories named in `subdirs` (nowhere else: other runs may be
// writing below `dir`); for a process resuming in a directory no other process writes. Returns
// how many it removed.
int remove_stale_temporaries(const std::string& dir, const std::vector<std::string>& subdirs);

bool file_exists(const std::string& path);

}  // namespace gl::io
