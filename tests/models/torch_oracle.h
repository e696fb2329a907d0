// torch_oracle.h: runs Python snippets under /usr/bin/python3 so tests can compare against
// PyTorch where it is installed (and skip, saying so, where it is not).
#pragma once
#include <string>
#include <vector>

namespace gl::models::testing {

// True when /usr/bin/python3 can import torch (checked once).
bool torch_available();
// Runs `code` with /usr/bin/python3 and returns its stdout; throws gl::Error with the output
// on a non-zero exit.
std::string run_python(const std::string& code);
// Whitespace-separated numbers of `text`.
std::vector<double> parse_numbers(const std::string& text);
// A Python list literal of the values, printed exactly ("[0.1, ...]" with 17 digits).
std::string py_list(const std::vector<double>& values);

}  // namespace gl::models::testing

#define GL_REQUIRE_TORCH()                                                               \
  do {                                                                                   \
    if (!::gl::models::testing::torch_available())                                       \
      GTEST_SKIP() << "torch is not importable by /usr/bin/python3; comparison skipped"; \
  } while (0)
