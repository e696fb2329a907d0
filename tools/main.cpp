// main.cpp: the `gradlens` command. Subcommands register themselves (tools/command.h).
#include <fmt/core.h>

#include <algorithm>
#include <exception>
#include <functional>
#include <string>

#include "tools/command.h"

namespace gl::tools {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
}  // namespace gl::tools

int main(int argc, char** argv) {
  CLI::App app{"gradlens: a deep-learning engine built to look inside training"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "gradlens 0.1.0");
  auto& commands = gl::tools::registry();
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  std::string current;
  for (auto& c : commands) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    c.setup(*sub);
    sub->preparse_callback([&current, name = c.name](std::size_t) { current = name; });
  }
  // Every on/off flag of every command takes no value but true or false.
  std::function<void(CLI::App&)> check_flags = [&check_flags](CLI::App& a) {
    for (CLI::Option* o : a.get_options())
      if (o->get_expected_max() == 0 && o != a.get_help_ptr() && o != a.get_help_all_ptr() &&
          o != a.get_version_ptr())
        o->check(gl::tools::on_off());
    for (CLI::App* s : a.get_subcommands([](CLI::App*) { return true; })) check_flags(*s);
  };
  check_flags(app);
  // Every error is one line on stderr, so scripts can show or grep it whole.
  auto one_line = [](std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
  };
  app.failure_message([&current, &one_line](const CLI::App*, const CLI::Error& e) {
    return fmt::format("gradlens{}{}: error: {} (see --help)\n", current.empty() ? "" : " ",
                       current, one_line(e.what()));
  });
  // CLI11 would only say that a subcommand is required; name the unknown one instead.
  if (argc > 1 && argv[1][0] != '-' &&
      std::none_of(commands.begin(), commands.end(),
                   [&](const auto& c) { return c.name == argv[1]; })) {
    std::string known;
    for (const auto& c : commands) known += (known.empty() ? "" : ", ") + c.name;
    fmt::print(stderr, "gradlens: error: unknown command '{}' (commands: {})\n", argv[1], known);
    return 1;
  }
  // Likewise one level down, for a command that needs a subcommand (`data fetch`, `data stats`).
  if (argc > 2 && argv[1][0] != '-' && argv[2][0] != '-') {
    const CLI::App* sub = app.get_subcommand(argv[1]);  // a command: checked above
    const auto subs = sub->get_subcommands([](const CLI::App*) { return true; });
    if (sub->get_require_subcommand_min() > 0 &&
        std::none_of(subs.begin(), subs.end(),
                     [&](const CLI::App* s) { return s->check_name(argv[2]); })) {
      std::string known;
      for (const CLI::App* s : subs) known += (known.empty() ? "" : ", ") + s->get_name();
      fmt::print(stderr, "gradlens {}: error: unknown command '{}' (commands: {})\n", argv[1],
                 argv[2], known);
      return 1;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    fmt::print(stderr, "gradlens {}: error: {}\n", current, one_line(e.what()));
    return 1;
  }
  return 0;
}
