// sweep.cpp: `gradlens sweep` runs a grid of trainings as `gradlens train` worker processes
// (--jobs at a time), skips finished runs and resumes partial ones from their checkpoints, can
// run one shard of the grid (--shard K/N, for Slurm job arrays), and keeps summary.csv current.
// `gradlens sweep merge` joins shards. See docs/sweeps.md.
#include "train/sweep.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "analysis/csv_read.h"
#include "engine/io/fs.h"
#include "engine/io/json_file.h"
#include "engine/io/tensor_io.h"
#include "tools/command.h"
#include "tools/train_flags.h"
#include "train/datasets.h"
#include "train/fused.h"

namespace gl::tools {
namespace {

namespace fs = std::filesystem;
using train::ojson;
using train::RunState;
using train::RunStatus;
using train::SweepRun;
using train::SweepSpec;

constexpr int kExitDiverged = 3;  // tools/train.cpp

// Flags of `gradlens train` the sweep sets itself for every run.
bool sweep_owned(const std::string& flag) {
  return flag == "out" || flag == "resume" || flag == "overwrite" || flag == "no-progress" ||
         flag == "help";
}

// Training arguments parsed as `gradlens train` parses them; the App lives as long as the flags
// (TrainFlags::to_config asks it which flags were given).
struct ParsedTrainArgs {
  std::unique_ptr<CLI::App> app = std::make_unique<CLI::App>();
  std::unique_ptr<TrainFlags> flags = std::make_unique<TrainFlags>();
};

// Throws CLI11's message for a bad flag or value.
ParsedTrainArgs parse_train_args(std::vector<std::string> args) {
  ParsedTrainArgs p;
  add_train_flags(*p.app, *p.flags);
  std::reverse(args.begin(), args.end());
  try {
    p.app->parse(args);
  } catch (const CLI::ParseError& e) {
    throw Error(e.what());
  }
  return p;
}

train::TrainFlagInfo train_flag_info() {
  train::TrainFlagInfo info;
  CLI::App app;
  TrainFlags f;
  add_train_flags(app, f);
  for (const CLI::Option* o : app.get_options()) {
    for (const auto& name : o->get_lnames()) {
      info.known.insert(name);
      // An optional value (--tensorboard [DIR]) is on/off in a sweep: each run its own default.
      if (o->get_expected_min() == 0) info.flags.insert(name);
      if (o->get_expected_max() > 1) info.repeatable.insert(name);
    }
  }
  // A run's arguments hold no --out: the sweep gives each its own.
  auto parse_run_args = [](std::vector<std::string> args) {
    args.push_back("--out");
    args.push_back("-");
    return parse_train_args(std::move(args));
  };
  info.parse = [parse_run_args](const std::vector<std::string>& args) {
    const ParsedTrainArgs p = parse_run_args(args);
    const TrainFlags& f = *p.flags;
    train::TrainFlagInfo::Parsed out{f.to_config(), ""};
    out.config.validate();
    out.extras = fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}", f.diagnostics, f.diagnostics_every,
                             f.saturation_threshold, f.analyze, f.analyze_every,
                             f.zero_grad_threshold, f.ema_decay, f.tensorboard, f.tensorboard_dir);
    return out;
  };
  info.check = [parse_run_args](const std::vector<std::string>& args) { parse_run_args(args); };
  return info;
}

// A command-line value as JSON: numbers and booleans typed, anything else a string. An integer
// past 64 bits stays the text it was (JSON would make it a rounded float), so the training
// flag's error names the value as given.
ojson typed(const std::string& s) {
  if (s == "true") return true;
  if (s == "false") return false;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  if (!s.empty() && end == s.c_str() + s.size()) {
    try {
      ojson v = ojson::parse(s);
      const bool integer = s.find_first_not_of("-0123456789") == std::string::npos;
      return integer && v.is_number_float() ? ojson(s) : v;
    } catch (const std::exception&) {
    }
  }
  return s;
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s)) return "?";
  if (s < 60) return fmt::format("{:.0f}s", s);
  if (s < 3600) return fmt::format("{}m{:02d}s", int(s / 60), int(s) % 60);
  return fmt::format("{}h{:02d}m", int(s / 3600), int(s / 60) % 60);
}

std::string self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  GL_CHECK(!ec, "sweep: cannot find the gradlens executable (/proc/self/exe): {}", ec.message());
  return p.string();
}

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int sig) {
  g_stop = sig;
}

void append_line(const std::string& log, const std::string& line) {
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  GL_CHECK(fd >= 0, "sweep: cannot open '{}' for writing", log);
  const std::string text = line + "\n";
  if (::write(fd, text.data(), text.size()) < 0) {
  }
  ::close(fd);
}

std::string command_line(const std::vector<std::string>& args) {
  std::string s = "gradlens";
  for (auto& a : args) s += " " + a;
  return s;
}

// Starts `gradlens ARGS` (a `train` or a `sweep group`) with stdout and stderr appended to
// `log`. The child dies with the sweep (PR_SET_PDEATHSIG), so a killed sweep leaves no orphan
// trainers writing into its runs.
pid_t spawn_gradlens(const std::string& exe, const std::vector<std::string>& args,
                     const std::string& log) {
  append_line(log, "== " + command_line(args));
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  GL_CHECK(fd >= 0, "sweep: cannot open '{}' for writing", log);
  std::vector<std::string> full{exe};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  GL_CHECK(pid >= 0, "sweep: fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  ::close(fd);
  return pid;
}

std::string last_line(const std::string& path) {
  std::ifstream f(path);
  std::string line, last;
  while (std::getline(f, line))
    if (!line.empty()) last = line;
  return last;
}

std::vector<std::string> axis_names(const SweepSpec& spec) {
  std::vector<std::string> out;
  for (auto& [k, v] : spec.axes) out.push_back(k);
  return out;
}

// A lock on `path` for this object's life (flock: released by the kernel when the process
// ends, however it ends; not inherited by the workers, which are started with exec). Shared or
// exclusive. Where the file system has no flock (Lustre mounted without it, NFS without a lock
// daemon) a warning says so and the sweep goes on unguarded.
class SweepLock {
 public:
  SweepLock(const std::string& path, bool exclusive, const std::string& holder) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    GL_CHECK(fd_ >= 0, "sweep: cannot open the lock file {}: {}", path, std::strerror(errno));
    if (::flock(fd_, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0) return;
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err == ENOSYS || err == EOPNOTSUPP || err == ENOLCK || err == EINVAL) {
      fmt::print(stderr,
                 "sweep: warning: this file system cannot lock {} ({}); nothing stops a second "
                 "process on the same runs\n",
                 path, std::strerror(err));
      return;
    }
    GL_CHECK(err != EWOULDBLOCK,
             "sweep: another process is running {} in this directory (it holds {}); wait for it "
             "to end, or use another --out",
             holder, path);
    throw Error(fmt::format("sweep: cannot lock {}: {}", path, std::strerror(err)));
  }
  ~SweepLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  SweepLock(const SweepLock&) = delete;
  SweepLock& operator=(const SweepLock&) = delete;

 private:
  int fd_ = -1;
};

// Whether dir/sweep.json exists; when it does, checks that it describes the same sweep.
bool check_sweep_json(const std::string& dir, const SweepSpec& spec) {
  const std::string path = dir + "/sweep.json";
  if (!io::file_exists(path)) return false;
  const ojson j = spec.to_json();
  ojson old;
  try {
    old = io::read_ordered_json_file(path);
  } catch (const std::exception& e) {
    throw Error(fmt::format("sweep: {}", e.what()));
  }
  GL_CHECK(old.is_object() && old.value("fixed", ojson()) == j["fixed"] &&
               old.value("grid", ojson()) == j["grid"],
           "sweep: {} holds a different sweep (fixed flags or grid differ); use the same "
           "flags to resume it, or another --out",
           path);
  return true;
}

// Writes sweep.json, or checks that the one already there describes the same sweep.
void write_sweep_json(const std::string& dir, const SweepSpec& spec,
                      const std::vector<SweepRun>& runs) {
  if (check_sweep_json(dir, spec)) return;
  ojson j = spec.to_json();
  ojson ids = ojson::array();
  for (auto& r : runs) ids.push_back(r.id);
  j["runs"] = ids;
  io::write_file_atomic(dir + "/sweep.json", j.dump(2) + "\n");
}

SweepSpec read_sweep_json(const std::string& dir) {
  std::string path = dir + "/sweep.json";
  GL_CHECK(fs::exists(dir), "sweep: directory {} does not exist", dir);
  GL_CHECK(fs::is_directory(dir), "sweep: {} is not a directory", dir);
  GL_CHECK(io::file_exists(path), "sweep: {} has no sweep.json (not a sweep directory)", dir);
  auto bytes = io::read_file(path);
  SweepSpec spec = SweepSpec::from_json(std::string(bytes.begin(), bytes.end()), path);
  train::check_flag_values(spec, train_flag_info(), path);
  return spec;
}

// --shard K/N: part K of N, numbered from 0 as $SLURM_ARRAY_TASK_ID is under --array=0-(N-1)
// (tools/sweep.sbatch). Returns why `text` is not such a pair, or "" with its numbers in `k`
// and `n`.
std::string read_shard(const std::string& text, int& k, int& n) {
  const size_t slash = text.find('/');
  // An unset job-array variable must not run the whole grid.
  if (text.empty()) return "expected K/N (e.g. 0/4), got an empty value";
  if (slash == std::string::npos) return fmt::format("expected K/N (e.g. 0/4), got '{}'", text);
  std::string ks = text.substr(0, slash), ns = text.substr(slash + 1);
  // "..., got 1 " -> "..., got '1 '": the part quoted, so that a space in it shows.
  auto quoted = [](const std::string& why, const std::string& part) {
    return why.substr(0, why.size() - part.size()) + "'" + part + "'";
  };
  // The checks leave plain decimal digits of an int behind.
  std::string why = integer_in(1, std::numeric_limits<int>::max())(ns);
  if (!why.empty()) return fmt::format("N in '{}': {}", text, quoted(why, ns));
  n = std::stoi(ns);
  why = integer_in(0, uint64_t(n - 1),
                   fmt::format("the N parts are numbered from 0, as $SLURM_ARRAY_TASK_ID is "
                               "under --array=0-{}",
                               n - 1))(ks);
  if (!why.empty()) return fmt::format("K in '{}': {}", text, quoted(why, ks));
  k = std::stoi(ks);
  return "";
}

struct SweepOpts {
  std::string spec_file, out, shard;
  std::vector<std::string> activations, inits, depths, widths, lrs, batch_sizes, optimizers,
      datasets, normalizations, seeds, grid;
  int jobs = 1;
  int fuse = 0;  // --fuse K: up to K compatible runs train together in one process (0: alone)
  bool list = false, no_progress = false;
  // Training flags given on the command line: name -> values (flags: empty).
  std::vector<std::pair<std::string, std::shared_ptr<std::vector<std::string>>>> train_values;
  struct TrainOption {
    std::string name;
    CLI::Option* option;
    enum Kind { Flag, Single, Repeatable } kind;
  };
  std::vector<TrainOption> train_options;
  // merge
  std::vector<std::string> merge_dirs;
  // group: the sweep directory, then run ids
  std::vector<std::string> group_args;
  bool partial = false;
};

SweepSpec build_spec(const SweepOpts& o) {
  SweepSpec spec;
  if (!o.spec_file.empty()) {
    spec = SweepSpec::from_file(o.spec_file);
    train::check_flag_values(spec, train_flag_info(), o.spec_file);
  } else {
    spec = SweepSpec::classic();
  }
  // Each training flag once on the command line: an axis flag (--activations ...), a --grid or
  // the flag itself; a second one would silently replace the first.
  std::set<std::string> given;
  auto once = [&given](const std::string& flag) {
    GL_CHECK(given.insert(flag).second,
             "--{} is given twice on the command line (as --grid {}=..., an axis flag such as "
             "--activations, or --{} itself); give its values once",
             flag, flag, flag);
  };
  const train::TrainFlagInfo info = train_flag_info();
  // The axis `flag` from one comma list of the command line (`given`: "--lrs", "--grid lr"),
  // each item checked alone as its training flag reads it, so that an error names the item.
  auto axis = [&](const std::string& given, const std::string& flag, const std::string& list) {
    once(flag);
    std::vector<ojson> v;
    size_t pos = 0;
    for (;;) {
      const size_t comma = list.find(',', pos);
      const std::string item =
          list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      GL_CHECK(!item.empty(), "{}: '{}' has an empty item", given, list);
      const std::string where = fmt::format("{}: item '{}'", given, item);
      v.push_back(flag == "init" ? ojson(train::canonical_init(item, where)) : typed(item));
      if (info.known.count(flag)) train::check_flag_value(flag, v.back(), info, where);
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    spec.set_axis(flag, v);
  };
  // An axis flag takes one list: a second one would silently replace the first.
  auto axis_flag = [&](const char* given, const char* flag, const std::vector<std::string>& lists) {
    if (lists.empty()) return;
    GL_CHECK(lists.size() == 1,
             "{} is given {} times; give its values once, as one comma list ({} V1,V2,...)", given,
             lists.size(), given);
    axis(given, flag, lists.front());
  };
  axis_flag("--activations", "activation", o.activations);
  axis_flag("--inits", "init", o.inits);
  axis_flag("--depths", "depth", o.depths);
  axis_flag("--widths", "width", o.widths);
  axis_flag("--lrs", "lr", o.lrs);
  axis_flag("--batch-sizes", "batch-size", o.batch_sizes);
  axis_flag("--optimizers", "optimizer", o.optimizers);
  axis_flag("--datasets", "dataset", o.datasets);
  axis_flag("--normalizations", "normalize", o.normalizations);
  axis_flag("--seeds", "seed", o.seeds);
  for (const auto& g : o.grid) {
    auto eq = g.find('=');
    GL_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < g.size(),
             "--grid: expected FLAG=V1,V2,..., got '{}'", g);
    const std::string flag = train::canonical_flag(g.substr(0, eq));
    axis("--grid " + flag, flag, g.substr(eq + 1));
  }
  // Training flags given once: a fixed value, or a one-value axis when the grid sweeps it.
  for (auto& [name, opt, kind] : o.train_options) {
    if (opt->count() == 0) continue;
    once(name);
    ojson v;
    auto it = std::find_if(o.train_values.begin(), o.train_values.end(),
                           [&](auto& p) { return p.first == name; });
    const auto& vals = *it->second;
    if (kind == SweepOpts::TrainOption::Flag) {
      GL_CHECK(vals.empty() || vals.back().empty(),
               "--{} {}: in a sweep every run writes its own (<run>/{}); give --{} alone", name,
               vals.back(), name, name);
      v = true;
    } else if (kind == SweepOpts::TrainOption::Repeatable) {
      v = ojson::array();
      for (auto& s : vals) v.push_back(s);
    } else {
      // As `gradlens train` does: a second value would silently replace the first.
      GL_CHECK(vals.size() == 1,
               "--{}: given {} times; a training flag takes one value (sweep "
               "it with --grid {}=V1,V2,...)",
               name, vals.size(), name);
      v = name == "init" ? ojson(vals.back()) : typed(vals.back());
    }
    bool is_axis =
        std::any_of(spec.axes.begin(), spec.axes.end(), [&](auto& a) { return a.first == name; });
    if (is_axis)
      spec.set_axis(name, {v});
    else
      spec.set_fixed(name, v);
  }
  return spec;
}

struct Progress {
  std::string label;
  size_t total = 0, done = 0, diverged = 0, failed = 0, running = 0;
  double elapsed = 0, eta = NAN;
  bool tty = false;
  void print(bool final_line) const {
    std::string s = fmt::format("{}{}/{} runs done", label, done, total);
    if (diverged) s += fmt::format(" ({} diverged)", diverged);
    if (failed) s += fmt::format(", {} failed", failed);
    s += fmt::format(", {} running, elapsed {}, ETA {}", running, fmt_duration(elapsed),
                     fmt_duration(eta));
    if (tty)
      fmt::print(stderr, "\r{}\x1b[K{}", s, final_line ? "\n" : "");
    else
      fmt::print(stderr, "{}\n", s);
  }
};

void run_sweep(const SweepOpts& o) {
  GL_CHECK(!o.out.empty(), "--out: a sweep directory is required");
  GL_CHECK(o.jobs >= 1, "--jobs must be at least 1, got {}", o.jobs);
  SweepSpec spec = build_spec(o);
  // One thread per worker unless asked otherwise: several single-threaded trainings use the
  // cores better than one multi-threaded one at these sizes.
  bool threads_set =
      spec.fixed.contains("threads") ||
      std::any_of(spec.axes.begin(), spec.axes.end(), [](auto& a) { return a.first == "threads"; });
  if (!threads_set) spec.set_fixed("threads", 1);
  auto info = train_flag_info();
  std::vector<SweepRun> all = train::expand_grid(spec, info);
  int k = 0, n = 1;
  if (!o.shard.empty()) {
    const std::string why = read_shard(o.shard, k, n);
    GL_CHECK(why.empty(), "--shard: {}", why);
  }
  std::vector<SweepRun> mine = train::shard_runs(all, k, n);

  if (o.list) {
    check_sweep_json(o.out, spec);  // the statuses below are of this sweep's runs
    for (auto& r : mine) {
      RunState st = train::run_state(train::run_dir(o.out, r), r.config.epochs);
      fmt::print("{} {}\n", r.id, train::status_name(st.status));
    }
    return;
  }

  io::ensure_dir(o.out + "/runs");
  // Two processes on the same runs (a requeued job, a command started twice) would train each
  // run twice over the same files: the second one stops here.
  // The whole sweep holds .lock exclusively; a shard holds it shared (shards run side by side,
  // not beside the whole sweep) and its own .lock-K-of-N exclusively.
  const SweepLock whole(o.out + "/.lock", o.shard.empty(),
                        o.shard.empty() ? "this sweep" : "the whole sweep (no --shard)");
  std::optional<SweepLock> part;
  if (!o.shard.empty())
    part.emplace(o.out + fmt::format("/.lock-{}-of-{}", k, n), true,
                 fmt::format("shard {}/{}", k, n));
  write_sweep_json(o.out, spec, all);
  const std::string summary_path =
      o.shard.empty() ? o.out + "/summary.csv" : o.out + fmt::format("/summary-{}-of-{}.csv", k, n);
  const auto names = axis_names(spec);
  auto write_summary = [&] {
    io::write_file_atomic(summary_path, train::summary_csv(o.out, mine, names));
  };

  std::vector<RunState> states(mine.size());
  std::vector<double> cost(mine.size());
  // The training split's size per dataset and data directory, for the costs. One that cannot be
  // read counts as unknown: the estimate is no place to fail, and the runs name the problem.
  std::map<std::pair<std::string, std::string>, int64_t> split_sizes;
  auto train_split_size = [&](const train::TrainConfig& c) {
    auto [it, fresh] = split_sizes.try_emplace({c.dataset, c.data_dir}, 0);
    if (fresh) {
      try {
        it->second = data::split_size(c.dataset, c.data_dir, "train");
      } catch (const std::exception&) {
        it->second = 0;
      }
    }
    return it->second;
  };
  std::vector<size_t> todo;
  Progress prog;
  prog.label = o.shard.empty() ? "sweep: " : fmt::format("sweep shard {}/{}: ", k, n);
  prog.total = mine.size();
  prog.tty = !o.no_progress && isatty(2);
  for (size_t i = 0; i < mine.size(); ++i) {
    states[i] = train::run_state(train::run_dir(o.out, mine[i]), mine[i].config.epochs);
    cost[i] = train::epoch_cost(mine[i].config, train_split_size(mine[i].config));
    if (states[i].status == RunStatus::Finished || states[i].status == RunStatus::Diverged) {
      ++prog.done;
      prog.diverged += states[i].status == RunStatus::Diverged;
    } else {
      todo.push_back(i);
    }
  }
  write_summary();
  if (!o.no_progress)
    fmt::print(stderr, "{}{} runs ({} already done), {} at a time, in {}\n", prog.label,
               mine.size(), prog.done, o.jobs, o.out);

  const std::string exe = self_exe();
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  // The work: one run per worker process, or with --fuse groups of up to K pending runs that
  // may train in lockstep (equal train::fused_group_key, fusable), split evenly.
  std::vector<std::vector<size_t>> units;
  {
    std::vector<std::pair<std::string, std::vector<size_t>>> by_key;
    size_t alone = 0;  // runs --fuse cannot group, and the first reason
    std::string why;
    for (size_t i : todo) {
      const auto& c = mine[i].config;
      if (o.fuse < 2) {
        units.push_back({i});
        continue;
      }
      if (std::string unsupported = train::fused_step_unsupported(c); !unsupported.empty()) {
        if (alone++ == 0) why = std::move(unsupported);
        units.push_back({i});
        continue;
      }
      const std::string key = train::fused_group_key(c);
      auto it = std::find_if(by_key.begin(), by_key.end(), [&](auto& p) { return p.first == key; });
      if (it == by_key.end()) {
        by_key.emplace_back(key, std::vector<size_t>{});
        it = by_key.end() - 1;
      }
      it->second.push_back(i);
    }
    if (alone > 0)
      fmt::print(stderr, "{}--fuse: {} of {} runs train alone, one per process ({})\n", prog.label,
                 alone, todo.size(), why);
    for (auto& [key, runs] : by_key) {
      const size_t groups = (runs.size() + size_t(o.fuse) - 1) / size_t(o.fuse);
      for (size_t g = 0; g < groups; ++g)
        units.emplace_back(runs.begin() + std::ptrdiff_t(runs.size() * g / groups),
                           runs.begin() + std::ptrdiff_t(runs.size() * (g + 1) / groups));
    }
    // Longest first (by the estimated work left: epoch_cost x epochs to go), so the last units
    // to start are short and the workers finish together instead of one long unit running
    // alone at the end; equal work keeps the grid order. The order changes no result.
    std::vector<std::pair<double, std::vector<size_t>>> by_work;
    for (auto& u : units) {
      double w = 0;
      for (size_t i : u)
        w += cost[i] * double(std::max<int64_t>(mine[i].config.epochs - states[i].epochs_done, 1));
      by_work.emplace_back(w, std::move(u));
    }
    std::sort(by_work.begin(), by_work.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second[0] < b.second[0];
    });
    units.clear();
    for (auto& [w, u] : by_work) units.push_back(std::move(u));
  }

  std::map<pid_t, size_t> workers;  // pid -> unit
  size_t running_runs = 0;
  std::vector<std::string> failures;
  std::vector<bool> active(mine.size(), false);
  size_t next = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto last_print = t0 - std::chrono::hours(1);

  auto estimate_eta = [&] {
    double measured_time = 0, measured_cost = 0, remaining = 0;
    size_t left = 0;
    for (size_t i = 0; i < mine.size(); ++i) {
      const RunState& st = states[i];
      for (double t : st.epoch_time)
        if (std::isfinite(t)) {
          measured_time += t;
          measured_cost += cost[i];
        }
      if (st.status != RunStatus::Finished && st.status != RunStatus::Diverged) {
        remaining += cost[i] * double(std::max<int64_t>(mine[i].config.epochs - st.epochs_done, 0));
        ++left;
      }
    }
    if (left == 0) return 0.0;
    if (measured_cost <= 0) return double(NAN);
    return remaining * (measured_time / measured_cost) /
           double(std::min<size_t>(left, size_t(o.jobs)));
  };

  bool print_due = false;  // a run ended: print once the freed slots are filled again
  while ((next < units.size() || !workers.empty())) {
    if (g_stop) {
      for (auto& [pid, u] : workers) kill(pid, SIGTERM);
      for (auto& [pid, u] : workers) waitpid(pid, nullptr, 0);
      write_summary();
      if (prog.tty) fmt::print(stderr, "\n");
      throw Error(fmt::format("interrupted (signal {}); run the same command again to resume",
                              int(g_stop)));
    }
    while (workers.size() < size_t(o.jobs) && next < units.size()) {
      const size_t u = next++;
      const std::vector<size_t>& unit = units[u];
      for (size_t i : unit) {
        io::ensure_dir(train::run_dir(o.out, mine[i]));
        active[i] = true;
      }
      running_runs += unit.size();
      const std::string log = train::run_dir(o.out, mine[unit[0]]) + "/train.log";
      std::vector<std::string> args;
      if (unit.size() == 1) {
        args = {"train"};
        args.insert(args.end(), mine[unit[0]].args.begin(), mine[unit[0]].args.end());
        for (const std::string& a : {std::string("--out"), train::run_dir(o.out, mine[unit[0]]),
                                     std::string("--resume"), std::string("--no-progress")})
          args.push_back(a);
      } else {
        args = {"sweep", "group", o.out};
        for (size_t i : unit) args.push_back(mine[i].id);
        for (size_t k = 1; k < unit.size(); ++k)
          append_line(train::run_dir(o.out, mine[unit[k]]) + "/train.log",
                      "== trained fused with " + mine[unit[0]].id +
                          " (its train.log): " + command_line(args));
      }
      workers[spawn_gradlens(exe, args, log)] = u;
    }
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    auto now = std::chrono::steady_clock::now();
    if (pid > 0 && workers.count(pid)) {
      const std::vector<size_t> unit = units[workers[pid]];  // a copy: units may grow below
      workers.erase(pid);
      running_runs -= unit.size();
      const std::string log = train::run_dir(o.out, mine[unit[0]]) + "/train.log";
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      // A fused group that failed (one member's bad checkpoint or weights file stops them all)
      // gives its unfinished runs another go one per process: each then finishes or fails with
      // its own error in its own train.log.
      for (size_t i : unit) {
        active[i] = false;
        states[i] = train::run_state(train::run_dir(o.out, mine[i]), mine[i].config.epochs);
      }
      auto ended = [&](size_t i) {
        return states[i].status == RunStatus::Finished || states[i].status == RunStatus::Diverged;
      };
      std::vector<size_t> retry;
      if (unit.size() > 1 && !g_stop)
        for (size_t i : unit)
          if (!ended(i)) retry.push_back(i);
      if (!retry.empty()) {
        fmt::print(stderr,
                   "{}{}a fused group of {} failed (exit {}): {} (see {}); training its {} "
                   "unfinished runs one per process\n",
                   prog.tty ? "\n" : "", prog.label, unit.size(), code, last_line(log), log,
                   retry.size());
        for (size_t i : retry) {
          append_line(train::run_dir(o.out, mine[i]) + "/train.log",
                      "== its fused group failed: training it alone");
          units.push_back({i});
        }
      }
      for (size_t i : unit) {
        const SweepRun& r = mine[i];
        if (std::find(retry.begin(), retry.end(), i) != retry.end()) continue;
        if (ended(i)) {
          ++prog.done;
          if (states[i].status == RunStatus::Diverged) {
            ++prog.diverged;
            if (!prog.tty && !o.no_progress)
              fmt::print(stderr, "{}{} diverged: {}\n", prog.label, r.id, states[i].error);
          }
        } else {
          ++prog.failed;
          std::string why = code == kExitDiverged ? "diverged without a marker" : last_line(log);
          failures.push_back(fmt::format("{} (exit {}): {}", r.id, code, why));
          fmt::print(stderr, "{}{}{} failed (exit {}): {} (see {})\n", prog.tty ? "\n" : "",
                     prog.label, r.id, code, why, log);
        }
      }
      write_summary();
      print_due = true;
    } else if (pid == 0 || (pid < 0 && errno == ECHILD)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (o.no_progress) continue;
    double since = std::chrono::duration<double>(now - last_print).count();
    const bool slots_filled = next >= units.size() || workers.size() >= size_t(o.jobs);
    if ((prog.tty && since > 1.0) || (print_due && slots_filled)) {
      print_due = false;
      for (size_t i = 0; i < mine.size(); ++i)
        if (active[i])
          states[i] = train::run_state(train::run_dir(o.out, mine[i]), mine[i].config.epochs);
      prog.running = running_runs;
      prog.elapsed = std::chrono::duration<double>(now - t0).count();
      prog.eta = estimate_eta();
      prog.print(false);
      last_print = now;
    }
  }
  write_summary();
  if (!o.no_progress) {
    prog.running = 0;
    prog.elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    prog.eta = 0;
    if (prog.tty) prog.print(true);
    fmt::print(stderr, "{}wrote {}\n", prog.label, summary_path);
  }
  if (!failures.empty()) {
    std::string msg =
        fmt::format("{} of {} runs failed (run the same command again to retry):", failures.size(),
                    mine.size());
    for (size_t i = 0; i < failures.size() && i < 10; ++i) msg += "\n  " + failures[i];
    throw Error(msg);
  }
}

// `gradlens sweep group DIR ID...`: trains the given runs of a sweep directory together, in
// this process, as a train::FusedGroup (what `sweep --fuse` starts for each group). Each run
// resumes from its checkpoint and ends as `gradlens train --resume` would leave it; a run that
// diverges gets its diverged.json and the others go on.
void group_sweep(const SweepOpts& o) {
  GL_CHECK(o.group_args.size() >= 2, "sweep group: give the sweep directory and run ids");
  const std::string dir = o.group_args[0];
  SweepSpec spec = read_sweep_json(dir);
  std::vector<SweepRun> all = train::expand_grid(spec, train_flag_info());
  std::vector<ParsedTrainArgs> parsed;
  std::vector<train::TrainConfig> configs;
  std::vector<std::string> ids(o.group_args.begin() + 1, o.group_args.end());
  for (const std::string& id : ids) {
    auto it = std::find_if(all.begin(), all.end(), [&](const SweepRun& r) { return r.id == id; });
    GL_CHECK(it != all.end(), "sweep group: {} has no run '{}' (see `gradlens sweep --list`)", dir,
             id);
    GL_CHECK(std::count(ids.begin(), ids.end(), id) == 1, "sweep group: run '{}' given twice", id);
    std::vector<std::string> args = it->args;
    for (const std::string& a : {std::string("--out"), train::run_dir(dir, *it),
                                 std::string("--resume"), std::string("--no-progress")})
      args.push_back(a);
    parsed.push_back(parse_train_args(args));
    configs.push_back(parsed.back().flags->to_config());
    io::ensure_dir(configs.back().out);
    fs::remove(configs.back().out + "/diverged.json");
  }
  train::FusedGroup group(configs);
  for (size_t i = 0; i < ids.size(); ++i) {
    attach_diagnostics(*group.trainer(i), *parsed[i].flags);
    attach_analysis(*group.trainer(i), *parsed[i].flags);
  }
  const std::string why = train::fused_step_unsupported(configs[0]);
  fmt::print("sweep group: {} runs{}\n", ids.size(),
             why.empty() ? "" : " one at a time (" + why + ")");
  std::fflush(stdout);
  auto outcomes = group.run();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (outcomes[i].diverged)
      fmt::print("{}: diverged: {}\n", ids[i], outcomes[i].diverged->what());
    else
      fmt::print("{}: test accuracy {:.2f}% after {} epochs\n", ids[i],
                 100 * outcomes[i].history.back().test_acc, outcomes[i].history.back().epoch);
  }
  fmt::print("sweep group: {} fused steps, {} steps on the tape\n", group.fused_steps(),
             group.tape_steps());
}

// Copies a run directory into place (temp name, then rename) so a half-copied run never looks
// like a run.
void copy_run(const fs::path& from, const fs::path& to) {
  fs::path tmp = to;
  tmp += ".merging";
  fs::remove_all(tmp);
  fs::copy(from, tmp, fs::copy_options::recursive);
  fs::rename(tmp, to);
}

// Why a part's run that looks finished or diverged cannot be merged as such (empty: it can):
// its metrics.csv rows must be epochs 1, 2, ... with numbers in every figure, its weights must
// load. A diverged run's diverged.json was read whole by run_state (train::read_diverged_marker).
std::string damaged(const fs::path& run, RunStatus status) {
  if (status == RunStatus::Diverged) return "";
  try {
    // read_csv's errors name the file and line (a row of the wrong length, a cell that is not
    // a number).
    const analysis::CsvTable t = analysis::read_csv((run / "metrics.csv").string());
    std::vector<int> cols;
    for (const char* n : {"epoch", "train_loss", "test_loss", "train_acc", "test_acc"})
      cols.push_back(t.require(n));
    for (size_t r = 0; r < t.rows.size(); ++r)
      for (int c : cols) {
        const std::string at = fmt::format("{}:{}", t.path, t.line_numbers[r]);
        if (t.rows[r][size_t(c)].empty()) return fmt::format("{}: no {}", at, t.header[size_t(c)]);
        const double v = t.number(r, c);  // throws on a cell that is not a number
        if (c == cols[0] && v != double(r + 1))
          return fmt::format("{}: epoch {} where {} belongs", at, t.rows[r][size_t(c)], r + 1);
      }
    io::load_tensors((run / "model.safetensors").string());
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Refuses a finished or diverged run directory, about to be counted in the sweep, that is not
// the sweep's run `r`: its config.json differs from the configuration the sweep gives `r` (a run
// of another sweep, or one edited afterwards), or it holds a diverged.json its trainer did not
// write (which would not count, though the run was stopped).
void check_merged_run(const fs::path& run, const SweepRun& r) {
  const std::string path = (run / "config.json").string();
  GL_CHECK(io::file_exists(path),
           "sweep merge: {}: no config.json, so it cannot be checked to be "
           "the sweep's run {}; rerun it",
           run.string(), r.id);
  if (auto d = r.config.difference_from(io::read_json_file(path), {}))
    throw Error(
        fmt::format("sweep merge: {}: {} is {}, but the sweep's run {} has {} {}; this "
                    "is not that run (rerun it, or merge parts of the same sweep)",
                    path, d->key, d->saved, r.id, d->key, d->now));
  std::string damage;
  if (!train::read_diverged_marker(run.string(), &damage) && !damage.empty())
    throw Error(
        fmt::format("sweep merge: {}: a damaged diverged.json ({}); remove it to count "
                    "the run by its other files, or rerun it",
                    run.string(), damage));
}

void merge_sweep(const SweepOpts& o) {
  GL_CHECK(!o.merge_dirs.empty(),
           "sweep merge: give the sweep directory (and any part directories)");
  const std::string dir = o.merge_dirs[0];
  SweepSpec spec = read_sweep_json(dir);
  auto info = train_flag_info();
  std::vector<SweepRun> all = train::expand_grid(spec, info);
  size_t copied = 0;
  // Parts' runs not merged: where they would go, their epochs, and what is wrong with them.
  struct Broken {
    std::string dst;
    int64_t epochs;
    std::string what;
  };
  std::vector<Broken> broken;
  // Every part, and every run that would count, is checked before anything is copied.
  for (size_t p = 0; p < o.merge_dirs.size(); ++p) {
    if (p > 0) {
      SweepSpec other = read_sweep_json(o.merge_dirs[p]);
      GL_CHECK(other.to_json()["fixed"] == spec.to_json()["fixed"] &&
                   other.to_json()["grid"] == spec.to_json()["grid"],
               "sweep merge: {} is a part of a different sweep than {}", o.merge_dirs[p], dir);
    }
    for (const auto& r : all) {
      const fs::path run = train::run_dir(o.merge_dirs[p], r);
      const auto st = train::run_state(run.string(), r.config.epochs);
      if (st.status == RunStatus::Finished || st.status == RunStatus::Diverged)
        check_merged_run(run, r);
    }
  }
  for (size_t p = 1; p < o.merge_dirs.size(); ++p) {
    for (const auto& r : all) {
      fs::path src = train::run_dir(o.merge_dirs[p], r), dst = train::run_dir(dir, r);
      auto s_src = train::run_state(src.string(), r.config.epochs);
      if (s_src.status != RunStatus::Finished && s_src.status != RunStatus::Diverged) continue;
      auto s_dst = train::run_state(dst.string(), r.config.epochs);
      if (s_dst.status == RunStatus::Finished || s_dst.status == RunStatus::Diverged) continue;
      if (std::string why = damaged(src, s_src.status); !why.empty()) {
        broken.push_back(
            {dst.string(), r.config.epochs, fmt::format("{} ({})", src.string(), why)});
        continue;
      }
      fs::create_directories(dst.parent_path());
      fs::remove_all(dst);
      copy_run(src, dst);
      ++copied;
    }
  }
  // A run damaged in one part may have come whole from another.
  std::erase_if(broken, [&](const auto& b) {
    const auto st = train::run_state(b.dst, b.epochs);
    return st.status == RunStatus::Finished || st.status == RunStatus::Diverged;
  });
  std::vector<std::string> missing;
  size_t diverged = 0;
  for (const auto& r : all) {
    auto st = train::run_state(train::run_dir(dir, r), r.config.epochs);
    if (st.status == RunStatus::Diverged) ++diverged;
    if (st.status != RunStatus::Finished && st.status != RunStatus::Diverged)
      missing.push_back(r.id);
  }
  // Without --partial a summary of an incomplete sweep is not written (it would look whole).
  const bool write = missing.empty() || o.partial;
  if (write)
    io::write_file_atomic(dir + "/summary.csv", train::summary_csv(dir, all, axis_names(spec)));
  fmt::print("merged {}: {} of {} runs done ({} diverged), {} copied from parts; {}\n", dir,
             all.size() - missing.size(), all.size(), diverged, copied,
             write ? "wrote " + dir + "/summary.csv" : std::string("no summary.csv written"));
  if (write)  // --partial: the damaged runs are among the missing ones
    for (const auto& b : broken)
      fmt::print(stderr, "sweep merge: not merged, damaged: {}\n", b.what);
  if (!write) {
    std::string msg = fmt::format(
        "{} runs are not finished (rerun their shards, or pass --partial):", missing.size());
    for (size_t i = 0; i < missing.size() && i < 10; ++i) msg += " " + missing[i];
    if (missing.size() > 10) msg += " ...";
    if (!broken.empty())
      msg += fmt::format("; {} of them damaged in a part, not merged: {}{}", broken.size(),
                         broken.front().what, broken.size() > 1 ? " ..." : "");
    throw Error(msg);
  }
}

const RegisterCommand reg{
    "sweep",
    "Train a grid of models (activation x init x depth x any training flag); resumable, "
    "sharded",
    [](CLI::App& sub) {
      auto o = std::make_shared<SweepOpts>();
      sub.add_option("SPEC", o->spec_file,
                     "Sweep file: JSON, or TOML when its name ends in .toml (docs/sweeps.md); "
                     "default: the classic grid")
          ->check(CLI::ExistingFile);
      sub.add_option("--out", o->out, "Sweep directory to write (runs/, sweep.json, summary.csv)");
      sub.add_option("--jobs,-j", o->jobs, "Trainings run at once, as separate processes")
          ->transform(integer_in(1, std::numeric_limits<int>::max()))
          ->capture_default_str();
      sub.add_option_function<std::vector<std::string>>(
             "--fuse",
             [o](const std::vector<std::string>& v) {
               // A value has passed the range check below.
               o->fuse = v.empty() || v.front().empty() ? 8 : std::stoi(v.front());
             },
             "Train up to K runs that differ only in flags outside the data and the layer widths "
             "(init, activation, optimizer, lr...) together in one process, one batched GEMM per "
             "layer for all of them, each ending exactly as it ends alone (default K 8; MLPs, on "
             "the CPU or a GPU, without dropout or batchnorm; docs/sweeps.md). --jobs counts "
             "processes")
          ->expected(0, 1)
          ->transform(integer_in(2, std::numeric_limits<int>::max()))
          ->type_name("[K]");
      sub.add_option("--shard", o->shard,
                     "Run only part K of N of the grid (0 <= K < N), e.g. "
                     "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT")
          ->check(
              [](const std::string& s) {
                int k = 0, n = 1;
                return read_shard(s, k, n);
              },
              "K/N");
      sub.add_flag("--list", o->list, "Print this shard's run ids and their status, run nothing");
      sub.add_flag("--no-progress", o->no_progress, "No progress line");
      auto axis = [&sub](const char* name, std::vector<std::string>& v, const char* help) {
        // One comma list per flag: a repeated flag is refused, not joined.
        sub.add_option(name, v, help)->allow_extra_args(false)->group("Grid axes");
      };
      axis("--activations", o->activations, "Activations, e.g. relu,tanh,sigmoid,gelu");
      axis("--inits", o->inits,
           "Initializers with arguments after ':', e.g. he_normal,he_normal:factor=6,"
           "orthogonal:gain=1.4,trunc_normal:std=0.02:a=-0.04:b=0.04");
      axis("--depths", o->depths, "Numbers of hidden layers, e.g. 5,10,20");
      axis("--widths", o->widths, "Hidden widths");
      axis("--lrs", o->lrs, "Learning rates");
      axis("--batch-sizes", o->batch_sizes, "Mini-batch sizes");
      axis("--optimizers", o->optimizers, "Optimizers (sgd, adam, adamw)");
      axis("--datasets", o->datasets, "Datasets (mnist, fashion-mnist, cifar10)");
      axis("--normalizations", o->normalizations, "Input normalizations (raw, standard)");
      axis("--seeds", o->seeds, "Seeds");
      sub.add_option("--grid", o->grid,
                     "Any training flag as an axis: FLAG=V1,V2,... (repeatable), e.g. "
                     "--grid momentum=0,0.9")
          ->group("Grid axes");
      // Every `gradlens train` flag, given once, fixes that flag for all runs.
      CLI::App probe;
      TrainFlags probe_flags;
      add_train_flags(probe, probe_flags);
      for (const CLI::Option* opt : probe.get_options()) {
        if (opt->get_lnames().empty()) continue;
        std::string name = opt->get_lnames()[0];
        if (sweep_owned(name)) continue;
        auto values = std::make_shared<std::vector<std::string>>();
        CLI::Option* mine = nullptr;
        // A flag with an optional value (--tensorboard [DIR]) is on/off here: one directory for
        // every run would mix their files, so each run takes its own default.
        const bool on_off = opt->get_expected_min() == 0;
        if (on_off && opt->get_expected_max() == 0)
          mine = sub.add_flag("--" + name, opt->get_description());
        else if (on_off)  // takes the value only to refuse it by name
          mine = sub.add_option("--" + name, *values,
                                opt->get_description() +
                                    fmt::format(" (in a sweep: give --{} without a value; each "
                                                "run writes its own <run>/{})",
                                                name, name))
                     ->expected(0, 1)
                     ->type_name("");
        else
          mine = sub.add_option("--" + name, *values, opt->get_description());
        mine->group("Training flags (fixed for every run)");
        if (!on_off) mine->allow_extra_args(false);
        o->train_values.emplace_back(name, values);
        auto kind = on_off                        ? SweepOpts::TrainOption::Flag
                    : opt->get_expected_max() > 1 ? SweepOpts::TrainOption::Repeatable
                                                  : SweepOpts::TrainOption::Single;
        o->train_options.push_back({name, mine, kind});
      }
      auto merge =
          sub.add_subcommand("merge",
                             "Join the shards of a sweep: copy runs from part directories, rebuild "
                             "summary.csv over the whole grid");
      merge
          ->add_option("DIR", o->merge_dirs,
                       "The sweep directory, then any other directories holding parts of it")
          ->required();
      merge->add_flag("--partial", o->partial, "Write summary.csv even if runs are missing");
      auto group = sub.add_subcommand(
          "group",
          "Train some runs of a sweep directory together in this process, in lockstep (what "
          "--fuse starts for each group)");
      group
          ->add_option("DIR ID", o->group_args,
                       "The sweep directory, then the ids of the runs to train (--list shows them)")
          ->required();
      sub.callback([o, merge, group] {
        if (merge->parsed())
          merge_sweep(*o);
        else if (group->parsed())
          group_sweep(*o);
        else
          run_sweep(*o);
      });
    }};

}  // namespace
}  // namespace gl::tools
