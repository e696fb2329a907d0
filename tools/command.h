// command.h: how a subcommand of the `gradlens` tool registers itself. Each subcommand lives
// in its own tools/<name>.cpp and defines one static RegisterCommand; main.cpp builds the CLI.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace gl::tools {

// setup() adds the subcommand's options to `sub` and sets its callback (sub->callback(...)).
// Errors are reported by throwing; main() prints "gradlens <cmd>: <message>" and exits 1.
struct Command {
  std::string name;
  std::string description;
  std::function<void(CLI::App& sub)> setup;
};

std::vector<Command>& registry();

struct RegisterCommand {
  RegisterCommand(std::string name, std::string description, std::function<void(CLI::App&)> setup) {
    registry().push_back({std::move(name), std::move(description), std::move(setup)});
  }
};

// A CLI11 check that an option's value does not start with '-' (CLI11's NonNegativeNumber
// names the whole double range in its message): "<what> is a non-negative integer, got -1".
inline CLI::Validator non_negative(const std::string& what) {
  return CLI::Validator(
      [what](std::string& v) {
        return !v.empty() && v[0] == '-' ? what + " is a non-negative integer, got " + v
                                         : std::string();
      },
      "", "non-negative");
}

// A CLI11 check that a list option (--hidden, --channels) was not given empty, which would
// silently mean its default.
inline CLI::Validator non_empty_list(const std::string& example) {
  return CLI::Validator(
      [example](std::string& v) {
        return v.empty() ? "give at least one value, e.g. " + example : std::string();
      },
      "", "non-empty");
}

}  // namespace gl::tools
