// analysis_fixture.h: helpers shared by the analysis tests: a temporary directory and a data
// directory that presents the mnist-tiny fixture as <dir>/mnist.
#pragma once
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace gl::testing_fixture {

struct ScratchDir {
  std::filesystem::path path;
  explicit ScratchDir(const std::string& tag) {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("gl_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
  std::string str() const { return path.string(); }
};

// <scratch>/data/mnist -> tests/data/mnist-tiny (800 train, 200 test digits).
inline std::string tiny_mnist_data_dir(const ScratchDir& d) {
  auto data = d.path / "data";
  std::filesystem::create_directories(data);
  std::filesystem::create_directory_symlink(std::string(GRADLENS_TEST_DATA) + "/mnist-tiny",
                                            data / "mnist");
  return data.string();
}

inline int run_shell(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace gl::testing_fixture
