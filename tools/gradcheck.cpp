// gradcheck.cpp: `gradlens gradcheck`: run the op table's f64 gradient checks.
#include <fmt/core.h>

#include <cmath>
#include <regex>

#include "engine/testing/op_table.h"
#include "tools/command.h"

namespace gl::tools {
namespace {

// The smallest step at which every row of the op table still passes in f64 (the rounding
// error of (f(x+e) - f(x-e)) / 2e grows as 1/e).
constexpr double kMinEps = 1e-8;
// The longest --filter taken: row names are a few dozen characters.
constexpr size_t kMaxFilterChars = 256;

RegisterCommand reg(
    "gradcheck", "Check every op's backward against central differences in f64 (the op table)",
    [](CLI::App& sub) {
      auto filter = std::make_shared<std::string>(".*");
      auto seed = std::make_shared<uint64_t>(1);
      auto eps = std::make_shared<double>(1e-6);
      sub.add_option("--filter", *filter, "Regex on row names (at most 256 characters)")
          ->capture_default_str();
      sub.add_option("--seed", *seed, "Seed of the inputs")
          ->transform(integer_in(0, std::numeric_limits<uint64_t>::max()))
          ->capture_default_str();
      sub.add_option("--eps", *eps,
                     "Finite-difference step, in [1e-8, 0.01]: below, f64 rounding in the central "
                     "difference outgrows the op table's tolerances. The relative error column "
                     "is |analytic - numeric| / max(|analytic|, |numeric|)")
          ->capture_default_str();
      sub.callback([=]() {
        // A central difference needs a small positive step: 0, negative or NaN steps made every
        // op "fail", and so did tiny ones (at 1e-17, x + eps == x and every derivative is 0).
        GL_CHECK(std::isfinite(*eps) && *eps >= kMinEps && *eps <= 1e-2,
                 "--eps must be in [{:g}, 0.01], got {}", kMinEps, *eps);
        // std::regex compiles and matches by recursion, as deep as the pattern is long: a
        // pattern far longer than any row name would exhaust the stack.
        GL_CHECK(filter->size() <= kMaxFilterChars,
                 "--filter: a regex of at most {} characters is expected, got {} ('{}...')",
                 kMaxFilterChars, filter->size(), filter->substr(0, 40));
        std::regex re;
        try {
          re = std::regex(*filter);
        } catch (const std::regex_error& e) {
          throw Error(fmt::format("--filter: invalid regex '{}'", *filter));
        }
        auto matches = [&](const std::string& name) {
          try {
            return std::regex_search(name, re);
          } catch (const std::regex_error& e) {
            throw Error(fmt::format("--filter '{}': the regex is too complex to match ({})",
                                    *filter, e.what()));
          }
        };
        int failed = 0, ran = 0;
        fmt::print("{:<28} {:>8} {:>12} {:>12}  {}\n", "op", "checked", "max abs err",
                   "max rel err", "result");
        for (const auto& c : gl::testing::op_table()) {
          if (!matches(c.name)) continue;
          auto r = gl::testing::gradcheck(c, *seed, *eps);
          ++ran;
          failed += !r.passed;
          fmt::print("{:<28} {:>8} {:>12.3e} {:>12.3e}  {}{}\n", c.name, r.checked, r.max_abs_err,
                     r.max_rel_err, r.passed ? "ok" : "FAIL ", r.detail);
        }
        GL_CHECK(ran > 0,
                 "--filter '{}' matches no op (`gradcheck --filter .` "
                 "runs them all)",
                 *filter);
        fmt::print("{} passed, {} failed\n", ran - failed, failed);
        if (failed) throw Error(fmt::format("{} op(s) failed gradcheck", failed));
      });
    });

}  // namespace
}  // namespace gl::tools
