// command.h: how a subcommand of the `gradlens` tool registers itself. Each subcommand lives
// in its own tools/<name>.cpp and defines one static RegisterCommand; main.cpp builds the CLI.
#pragma once
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <utility>
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

constexpr uint64_t kInt64Max = uint64_t(std::numeric_limits<int64_t>::max());

// A CLI11 check that an integer option's value is a decimal integer from `lo` to `hi`:
// "--epochs: expected an integer from 1 to 1000000, got 1e12", with `hint` (what 0 means, say)
// in parentheses after the range. CLI11 reads integers with strtoll/strtoull, which saturate
// past 64 bits without a word, wrap "-1" for an unsigned option and read 010 as octal and 0x10
// as hex; the value checked here is handed on as plain decimal digits, so it is given with
// ->transform() (->check() would hand on the text as it was typed).
inline CLI::Validator integer_in(int64_t lo, uint64_t hi, const std::string& hint = "") {
  return CLI::Validator(
      [lo, hi, hint](std::string& v) {
        const char *begin = v.data(), *end = v.data() + v.size();
        std::string digits;
        auto in_range = [&](auto x) {
          auto [stop, ec] = std::from_chars(begin, end, x);
          if (ec != std::errc() || stop != end || std::cmp_less(x, lo) || std::cmp_greater(x, hi))
            return false;
          digits = std::to_string(x);
          return true;
        };
        // The unsigned parse takes no sign; the signed one takes only a minus.
        const bool ok = !v.empty() && (v[0] == '-' ? in_range(int64_t{}) : in_range(uint64_t{}));
        if (!ok)
          return fmt::format("expected an integer from {} to {}{}, got {}", lo, hi,
                             hint.empty() ? "" : " (" + hint + ")", v);
        v = digits;
        return std::string();
      },
      "", "integer range");
}

// A CLI11 check that a floating-point option's value is a number: "--lr: expected a number, got
// abc" (the range, if any, is the option's own check).
inline CLI::Validator a_number() {
  return CLI::Validator(
      [](std::string& v) {
        char* end = nullptr;
        const bool ok = !v.empty() && !std::isspace(static_cast<unsigned char>(v[0])) &&
                        (std::strtod(v.c_str(), &end), end == v.c_str() + v.size());
        return ok ? std::string() : "expected a number, got " + v;
      },
      "", "number");
}

// A CLI11 check for an on/off flag given a value (--log-steps=VALUE): true or false. CLI11
// itself reads any number as on (5) or off (-1, 0) and words such as "yes" and "disable".
inline CLI::Validator on_off() {
  return CLI::Validator(
      [](std::string& v) {
        return v == "true" || v == "false"
                   ? std::string()
                   : "an on/off flag takes no value, or =true or =false, got " + v;
      },
      "", "on/off");
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
