// torch_oracle.cpp: temp-file based Python runner for the PyTorch comparisons.
#include "tests/models/torch_oracle.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "engine/core.h"

namespace gl::models::testing {

namespace {
std::string temp_path(const char* suffix) {
  std::string tmpl = "/tmp/gl_models_test_XXXXXX";
  int fd = mkstemp(tmpl.data());
  GL_CHECK(fd >= 0, "run_python: cannot create a temp file");
  close(fd);
  std::remove(tmpl.c_str());
  return tmpl + suffix;
}

int run(const std::string& code, std::string& output) {
  std::string script = temp_path(".py");
  {
    std::ofstream f(script);
    f << code;
  }
  std::string cmd = "/usr/bin/python3 " + script + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  GL_CHECK(pipe != nullptr, "run_python: popen failed");
  char buf[4096];
  output.clear();
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
  int status = pclose(pipe);
  std::remove(script.c_str());
  return status;
}
}  // namespace

bool torch_available() {
  static const bool available = [] {
    if (access("/usr/bin/python3", X_OK) != 0) return false;
    std::string out;
    return run("import torch\nprint('ok')\n", out) == 0 && out.find("ok") != std::string::npos;
  }();
  return available;
}

std::string run_python(const std::string& code) {
  std::string out;
  int status = run(code, out);
  GL_CHECK(status == 0, "python snippet failed (status {}):\n{}", status, out);
  return out;
}

std::vector<double> parse_numbers(const std::string& text) {
  std::istringstream in(text);
  std::vector<double> v;
  std::string tok;
  while (in >> tok) v.push_back(std::strtod(tok.c_str(), nullptr));
  return v;
}

std::string py_list(const std::vector<double>& values) {
  std::string s = "[";
  for (std::size_t i = 0; i < values.size(); ++i)
    s += fmt::format("{}{:.17g}", i ? ", " : "", values[i]);
  return s + "]";
}

}  // namespace gl::models::testing
