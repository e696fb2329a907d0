// run_util.h: helpers for tests that run the `gradlens` binary as a child process: spawning
// it with captured stdout/stderr, exit status vs signal, temporary data directories holding the
// mnist-tiny fixture, file reading, comparisons of run directories (byte-identical outputs; the
// last test figures that `gradlens eval` must reproduce) and the PyTorch availability check.
#pragma once
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace gl::testing {

namespace fs = std::filesystem;

// A fresh temporary directory, removed with everything in it when the test program exits.
inline std::string make_temp_dir(const std::string& prefix) {
  static std::vector<std::string> dirs;
  if (dirs.empty())
    std::atexit([] {
      for (const auto& d : dirs) {
        std::error_code ec;
        fs::remove_all(d, ec);
      }
    });
  std::string tmpl = (fs::temp_directory_path() / (prefix + "_XXXXXX")).string();
  char* d = mkdtemp(tmpl.data());
  if (!d) throw std::runtime_error("mkdtemp failed for " + tmpl);
  dirs.emplace_back(d);
  return dirs.back();
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

struct ProcResult {
  bool exited = false;  // false: killed by a signal
  int code = -1;        // exit code when exited
  int signal = 0;
  std::string out, err;
};

// Starts the gradlens binary with args; stdout/stderr go to the given files.
inline pid_t spawn_gradlens(const std::vector<std::string>& args, const std::string& out_path,
                            const std::string& err_path) {
  std::vector<std::string> full{GRADLENS_BINARY};
  full.insert(full.end(), args.begin(), args.end());
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) _exit(127);
    dup2(o, 1);
    dup2(e, 2);
    std::vector<char*> argv;
    for (auto& a : full) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

inline ProcResult wait_proc(pid_t pid, const std::string& out_path, const std::string& err_path) {
  ProcResult r;
  int status = 0;
  waitpid(pid, &status, 0);
  r.exited = WIFEXITED(status);
  if (r.exited) r.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.out = read_text(out_path);
  r.err = read_text(err_path);
  return r;
}

// Runs gradlens to completion, capturing its output.
inline ProcResult run_gradlens(const std::vector<std::string>& args) {
  static std::string dir = make_temp_dir("gl_proc");
  static int counter = 0;
  std::string base = dir + "/" + std::to_string(counter++);
  pid_t pid = spawn_gradlens(args, base + ".out", base + ".err");
  return wait_proc(pid, base + ".out", base + ".err");
}

inline std::string describe(const ProcResult& r) {
  return (r.exited ? "exit " + std::to_string(r.code) : "signal " + std::to_string(r.signal)) +
         "\nstdout: " + r.out + "\nstderr: " + r.err;
}

inline std::string fixture_dir() {
  return std::string(GRADLENS_TEST_DATA) + "/mnist-tiny";
}

// A data directory whose mnist/ is the committed fixture (load_split reads DIR/<dataset>/).
inline std::string fixture_data_dir() {
  static std::string dir = [] {
    std::string d = make_temp_dir("gl_fixture");
    fs::create_directory_symlink(fixture_dir(), d + "/mnist");
    return d;
  }();
  return dir;
}

// metrics.csv without its epoch_time column (the only one that varies between equal runs);
// each row's epoch_time must be a positive number of seconds.
inline std::string strip_epoch_time(const std::string& csv) {
  std::stringstream in(csv), out;
  std::string line;
  int col = -1;
  bool header = true;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream ls(line);
    std::string c;
    while (std::getline(ls, c, ',')) cells.push_back(c);
    if (header) {
      for (std::size_t i = 0; i < cells.size(); ++i)
        if (cells[i] == "epoch_time") col = int(i);
      header = false;
    } else if (col >= 0 && std::size_t(col) < cells.size()) {
      const double t = std::strtod(cells[std::size_t(col)].c_str(), nullptr);
      EXPECT_TRUE(std::isfinite(t) && t > 0)
          << "epoch_time '" << cells[std::size_t(col)] << "' in: " << line;
    }
    for (std::size_t i = 0; i < cells.size(); ++i)
      if (int(i) != col) out << cells[i] << ';';
    out << '\n';
  }
  return out.str();
}

// Every output of two run directories that must not depend on timing, byte for byte.
inline void expect_same_outputs(const std::string& a, const std::string& b) {
  for (const char* f : {"model.safetensors", "steps.csv", "per_class.csv", "confusion.csv",
                        "misclassified.csv", "misclassified_images.npy"}) {
    std::string x = read_text(a + "/" + f), y = read_text(b + "/" + f);
    EXPECT_FALSE(x.empty()) << a << "/" << f;
    EXPECT_TRUE(x == y) << f << " differs between " << a << " and " << b;
  }
  std::string ma = strip_epoch_time(read_text(a + "/metrics.csv"));
  std::string mb = strip_epoch_time(read_text(b + "/metrics.csv"));
  EXPECT_FALSE(ma.empty());
  EXPECT_EQ(ma, mb) << "metrics.csv (epoch_time aside)";
}

// The test loss and accuracy (a fraction) of the last row of the run's metrics.csv.
inline std::pair<double, double> last_test_figures(const std::string& run) {
  std::stringstream metrics(read_text(run + "/metrics.csv"));
  std::string line, last;
  while (std::getline(metrics, line))
    if (!line.empty()) last = line;
  std::vector<std::string> cells;
  std::stringstream row(last);
  for (std::string c; std::getline(row, c, ',');) cells.push_back(c);
  // epoch,train_loss,test_loss,train_acc,test_acc,...
  if (cells.size() < 5) throw std::runtime_error("short metrics.csv row: " + last);
  return {std::stod(cells[2]), std::stod(cells[4])};
}

// `gradlens eval ARGS` succeeds and prints the run's last test loss and accuracy.
inline void expect_eval_reproduces(const std::vector<std::string>& args, const std::string& run) {
  const auto [want_loss, want_acc] = last_test_figures(run);
  ProcResult e = run_gradlens(args);
  ASSERT_TRUE(e.exited && e.code == 0) << describe(e);
  const auto at = e.out.find("loss "), pct = e.out.find("accuracy ");
  ASSERT_TRUE(at != std::string::npos && pct != std::string::npos) << e.out;
  const double loss = std::stod(e.out.substr(at + 5)), acc = std::stod(e.out.substr(pct + 9));
  EXPECT_NEAR(loss, want_loss, 1e-8 * std::fabs(want_loss)) << e.out;
  EXPECT_NEAR(acc, 100.0 * want_acc, 1e-9) << e.out;
}

inline bool torch_available() {
  static bool ok = access("/usr/bin/python3", X_OK) == 0 &&
                   std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0;
  return ok;
}

inline int run_python(const std::vector<std::string>& args, const std::string& log_path) {
  std::string cmd = "/usr/bin/python3";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " >'" + log_path + "' 2>&1";
  return std::system(cmd.c_str());
}

}  // namespace gl::testing
