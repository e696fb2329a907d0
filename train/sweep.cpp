// sweep.cpp: sweep specs, grid expansion with stable run ids, sharding, and reading run
// directories back into run states and summary.csv.
#include "train/sweep.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/io/fs.h"
#include "engine/io/json_file.h"
#include "engine/io/toml.h"
#include "models/init.h"

namespace gl::train {

namespace {

// Axes that name a run readably; every other axis goes into the id's hash.
const char* kIdAxes[] = {"activation", "init", "depth", "seed"};

int axis_rank(const std::string& name) {
  if (name == "activation") return 0;
  if (name == "init") return 1;
  if (name == "depth") return 2;
  if (name == "seed") return 4;
  return 3;
}

bool axis_less(const std::string& a, const std::string& b) {
  int ra = axis_rank(a), rb = axis_rank(b);
  return ra != rb ? ra < rb : a < b;
}

std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '+' || c == '-';
    out += ok ? c : '_';
  }
  return out;
}

uint32_t fnv1a32(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

ojson normalize_value(const std::string& flag, const ojson& v, const std::string& where) {
  if (flag == "init") return canonical_init(v, where);
  if (v.is_string() || v.is_number() || v.is_boolean()) return v;
  if (v.is_array()) {
    for (auto& e : v)
      GL_CHECK(e.is_string() || e.is_number(), "{}: {}: array entries must be strings or numbers",
               where, flag);
    return v;
  }
  throw Error(fmt::format("{}: {}: expected a string, number or boolean, got {}", where, flag,
                          io::json_text(v)));
}

}  // namespace

std::string canonical_flag(std::string key) {
  while (!key.empty() && key[0] == '-') key.erase(0, 1);
  std::replace(key.begin(), key.end(), '_', '-');
  return key;
}

std::string value_text(const ojson& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_array()) {
    std::string s;
    for (auto& e : v) s += (s.empty() ? "" : " ") + value_text(e);
    return s;
  }
  return v.dump();
}

std::string canonical_init(const ojson& value, const std::string& where) {
  std::string name;
  std::map<std::string, std::string> args;
  if (value.is_string()) {
    std::string s = value.get<std::string>();
    // As --augment refuses "crop:": a ':' opens an argument.
    GL_CHECK(s.empty() || s.back() != ':',
             "{}: init '{}' ends with a ':'; give NAME or NAME:KEY=VALUE[:KEY=VALUE...]", where, s);
    std::stringstream ss(s);
    std::string part;
    bool first = true;
    while (std::getline(ss, part, ':')) {
      if (first) {
        name = part;
        first = false;
        continue;
      }
      auto eq = part.find('=');
      GL_CHECK(eq != std::string::npos && eq > 0,
               "{}: init '{}': expected name:key=value[:key=value...], got '{}'", where, s, part);
      GL_CHECK(args.emplace(part.substr(0, eq), part.substr(eq + 1)).second,
               "{}: init '{}': {} is given twice; give each argument once", where, s,
               part.substr(0, eq));
    }
  } else if (value.is_object()) {
    GL_CHECK(value.contains("name") && value["name"].is_string(),
             "{}: init {}: an object needs a \"name\"", where, io::json_text(value));
    name = value["name"].get<std::string>();
    for (auto& [k, v] : value.items()) {
      if (k == "name") continue;
      GL_CHECK(v.is_string() || v.is_number() || v.is_boolean(),
               "{}: init {}: argument \"{}\" must be a string or a number, got {}", where,
               io::json_text(value), k, io::json_text(v));
      args[k] = value_text(v);
    }
  } else {
    throw Error(fmt::format("{}: init: expected a string or an object, got {}", where,
                            io::json_text(value)));
  }
  GL_CHECK(!name.empty(), "{}: init {}: empty initializer name", where, io::json_text(value));
  std::string out = name;
  for (auto& [k, v] : args) out += ":" + k + "=" + v;
  return out;
}

// ------------------------------------------------------------------ spec
void SweepSpec::set_axis(const std::string& flag_in, std::vector<ojson> values) {
  std::string flag = canonical_flag(flag_in);
  GL_CHECK(!values.empty(), "sweep axis {}: no values", flag);
  for (auto& v : values) v = normalize_value(flag, v, "sweep axis");
  std::erase_if(axes, [&](auto& a) { return a.first == flag; });
  fixed.erase(flag);
  axes.emplace_back(flag, std::move(values));
  std::stable_sort(axes.begin(), axes.end(),
                   [](auto& a, auto& b) { return axis_less(a.first, b.first); });
}

void SweepSpec::set_fixed(const std::string& flag_in, ojson value) {
  std::string flag = canonical_flag(flag_in);
  fixed[flag] = normalize_value(flag, value, "sweep fixed flag");
}

SweepSpec SweepSpec::classic() {
  SweepSpec s;
  s.name = "classic";
  s.set_fixed("width", 128);
  s.set_fixed("lr", 0.01);
  s.set_fixed("batch-size", 128);
  // What metrics.csv's act_mean_i, act_std_i, grad_norm_i and the sweep report need; the
  // per-run histograms, unit and selectivity files are one `--diagnostics all` away.
  s.set_fixed("diagnostics", "activations,grads");
  s.set_axis("activation", {"relu", "tanh", "sigmoid", "gelu"});
  s.set_axis("init", {"he_normal", "he_uniform", "xavier_normal", "xavier_uniform", "normal",
                      "zero", "orthogonal", "trunc_normal"});
  s.set_axis("depth", {5, 10, 20, 30, 40, 50});
  s.set_axis("seed", {0});
  return s;
}

namespace {

// The sweep file's document, from JSON or TOML.
SweepSpec spec_from_document(const ojson& j, const std::string& source) {
  GL_CHECK(j.is_object(), "{}: a sweep file is a JSON object", source);
  for (auto& [k, v] : j.items())
    GL_CHECK(k == "name" || k == "fixed" || k == "grid" || k == "runs",
             "{}: unknown key \"{}\" (expected name, fixed, grid; runs, which a sweep.json "
             "holds, is read and ignored)",
             source, k);
  SweepSpec s;
  if (j.contains("name")) {
    GL_CHECK(j["name"].is_string(), "{}: \"name\" must be a string, got {}", source,
             io::json_text(j["name"]));
    s.name = j["name"].get<std::string>();
  }
  if (j.contains("fixed")) {
    GL_CHECK(j["fixed"].is_object(), "{}: \"fixed\" must be an object of flag: value", source);
    for (auto& [k, v] : j["fixed"].items()) {
      GL_CHECK(!s.fixed.contains(canonical_flag(k)),
               "{}: fixed.{} names --{} again (another spelling of a key above)", source, k,
               canonical_flag(k));
      s.fixed[canonical_flag(k)] = normalize_value(canonical_flag(k), v, source);
    }
  }
  if (j.contains("grid")) {
    GL_CHECK(j["grid"].is_object(), "{}: \"grid\" must be an object of flag: [values]", source);
    for (auto& [k, v] : j["grid"].items()) {
      const std::string flag = canonical_flag(k);
      GL_CHECK(!s.fixed.contains(flag), "{}: --{} is both fixed and a grid axis (grid.{})", source,
               flag, k);
      GL_CHECK(std::none_of(s.axes.begin(), s.axes.end(), [&](auto& a) { return a.first == flag; }),
               "{}: grid.{} names --{} again (another spelling of a key above)", source, k, flag);
      GL_CHECK(v.is_array() && !v.empty(), "{}: grid.{} must be a non-empty array", source, k);
      std::vector<ojson> vals(v.begin(), v.end());
      try {
        s.set_axis(k, vals);
      } catch (const Error& e) {
        throw Error(fmt::format("{}: {}", source, e.what()));
      }
    }
  }
  return s;
}

}  // namespace

SweepSpec SweepSpec::from_json(const std::string& text, const std::string& source) {
  ojson j;
  // A key given twice in one object would silently keep its last value: refused by name.
  std::vector<std::vector<std::string>> keys;  // the keys of each open object
  std::string duplicate;
  auto on_event = [&](int depth, ojson::parse_event_t event, ojson& parsed) {
    if (event == ojson::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (event == ojson::parse_event_t::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (event == ojson::parse_event_t::key && !keys.empty() && duplicate.empty()) {
      const std::string k = parsed.get<std::string>();
      auto& seen = keys.back();
      if (std::find(seen.begin(), seen.end(), k) != seen.end())
        duplicate = k;
      else
        seen.push_back(k);
    }
    (void)depth;
    return true;
  };
  try {
    io::check_json_nesting(text, source);
  } catch (const std::runtime_error& e) {
    throw Error(e.what());
  }
  try {
    j = ojson::parse(text, on_event);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: not valid JSON: {}", source, e.what()));
  }
  GL_CHECK(duplicate.empty(), "{}: key \"{}\" is given twice in one object; give it once", source,
           duplicate);
  return spec_from_document(j, source);
}

SweepSpec SweepSpec::from_toml(const std::string& text, const std::string& source) {
  const ojson j = io::parse_toml(text, source);
  // JSON has no infinity or NaN: the JSON form of such a value would be null.
  std::function<void(const ojson&, const std::string&)> finite = [&](const ojson& v,
                                                                     const std::string& key) {
    if (v.is_number_float())
      GL_CHECK(std::isfinite(v.get<double>()),
               "{}: {}: {} is not allowed in a sweep file (JSON has no such number)", source, key,
               std::isnan(v.get<double>()) ? "nan"
               : v.get<double>() > 0       ? "inf"
                                           : "-inf");
    if (v.is_array())
      for (size_t k = 0; k < v.size(); ++k) finite(v[k], fmt::format("{}[{}]", key, k));
    if (v.is_object())
      for (auto& [k, e] : v.items()) finite(e, key.empty() ? k : key + "." + k);
  };
  finite(j, "");
  return spec_from_document(j, source);
}

SweepSpec SweepSpec::from_file(const std::string& path) {
  const std::vector<uint8_t> bytes = io::read_file(path);
  const std::string text(bytes.begin(), bytes.end());
  return path.ends_with(".toml") ? from_toml(text, path) : from_json(text, path);
}

ojson SweepSpec::to_json() const {
  ojson j;
  j["name"] = name;
  j["fixed"] = fixed;
  ojson g = ojson::object();
  for (auto& [k, vals] : axes) g[k] = vals;
  j["grid"] = g;
  return j;
}

// ------------------------------------------------------------------ expansion
namespace {

void append_flag(std::vector<std::string>& args, const std::string& flag, const ojson& v,
                 const TrainFlagInfo& info, const std::string& where) {
  GL_CHECK(flag != "out" && flag != "resume" && flag != "overwrite",
           "{}: --{} is set by the sweep for each run and cannot be given", where, flag);
  GL_CHECK(info.known.count(flag), "{}: --{} is not a flag of `gradlens train`", where, flag);
  if (info.flags.count(flag)) {
    GL_CHECK(v.is_boolean(), "{}: --{} is an on/off flag: use true or false, got {}", where, flag,
             io::json_text(v));
    if (v.get<bool>()) args.push_back("--" + flag);
    return;
  }
  if (flag == "init") {
    std::string s = v.get<std::string>();
    std::stringstream ss(s);
    std::string part;
    std::getline(ss, part, ':');
    args.push_back("--init");
    args.push_back(part);
    while (std::getline(ss, part, ':')) {
      args.push_back("--init-arg");
      args.push_back(part);
    }
    return;
  }
  if (v.is_array()) {
    for (auto& e : v) {
      args.push_back("--" + flag);
      args.push_back(value_text(e));
    }
    return;
  }
  args.push_back("--" + flag);
  args.push_back(value_text(v));
}

}  // namespace

void check_flag_value(const std::string& flag, const ojson& value, const TrainFlagInfo& info,
                      const std::string& where) {
  std::vector<std::string> args;
  append_flag(args, flag, value, info, where);
  if (!info.check) return;
  try {
    info.check(args);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: {}", where, e.what()));
  }
}

void check_flag_values(const SweepSpec& spec, const TrainFlagInfo& info,
                       const std::string& source) {
  auto check = [&](const std::string& key, const std::string& flag, const ojson& v) {
    const std::string where = source + ": " + key;
    // A list where the flag takes one value would be unwrapped into repeated flags; only a
    // repeatable flag takes one.
    GL_CHECK(!v.is_array() || info.repeatable.count(flag),
             "{}: {} is a list, but --{} takes one value{}", where, io::json_text(v), flag,
             key.rfind("fixed.", 0) == 0 ? " (a grid axis goes under \"grid\")" : "");
    check_flag_value(flag, v, info, where);
  };
  for (auto& [k, v] : spec.fixed.items()) check("fixed." + k, k, v);
  for (auto& [a, vals] : spec.axes)
    for (auto& v : vals) check("grid." + a, a, v);
}

std::vector<SweepRun> expand_grid(const SweepSpec& spec, const TrainFlagInfo& info) {
  for (auto& [k, v] : spec.fixed.items())
    for (auto& [a, vals] : spec.axes)
      GL_CHECK(a != k, "sweep: --{} is both fixed and a grid axis", k);
  check_flag_values(spec, info, "sweep");
  size_t total = 1;
  for (auto& [a, vals] : spec.axes) total *= vals.size();
  std::vector<SweepRun> runs;
  runs.reserve(total);
  std::map<std::string, size_t> seen;
  std::map<std::string, std::string> configs;  // config.json -> the first run's id
  for (size_t i = 0; i < total; ++i) {
    SweepRun r;
    TrainFlagInfo::Parsed parsed;
    std::string init_draws;
    r.index = i;
    // Mixed radix with the last axis fastest.
    size_t rest = i;
    std::vector<size_t> pick(spec.axes.size());
    for (size_t a = spec.axes.size(); a-- > 0;) {
      pick[a] = rest % spec.axes[a].second.size();
      rest /= spec.axes[a].second.size();
    }
    std::string hashed;
    for (size_t a = 0; a < spec.axes.size(); ++a) {
      const auto& name = spec.axes[a].first;
      const auto& v = spec.axes[a].second[pick[a]];
      r.params.emplace_back(name, v);
      if (std::find(std::begin(kIdAxes), std::end(kIdAxes), name) == std::end(kIdAxes))
        hashed += name + "=" + v.dump() + ";";
    }
    std::string where = fmt::format("sweep run {}", i);
    for (auto& [k, v] : spec.fixed.items()) append_flag(r.args, k, v, info, where);
    for (auto& [k, v] : r.params) append_flag(r.args, k, v, info, where);
    try {
      parsed = info.parse(r.args);
      r.config = parsed.config;
      init_draws = models::parse_init(r.config.init, r.config.init_args).draws();
    } catch (const std::exception& e) {
      std::string cmd;
      for (auto& a : r.args) cmd += " " + a;
      throw Error(fmt::format("{} (train{}): {}", where, cmd, e.what()));
    }
    const auto& c = r.config;
    std::string init = c.init;
    for (auto& [k, v] : c.init_args) init += "_" + k + v;
    r.id = sanitize(
        fmt::format("{}-{}-d{}-s{}", c.activation, init, c.hidden_widths().size(), c.seed));
    if (!hashed.empty()) r.id += fmt::format("-h{:08x}", fnv1a32(hashed));
    auto [it, fresh] = seen.emplace(r.id, i);
    GL_CHECK(fresh,
             "sweep: runs {} and {} would both be named {}: a value given twice, or a flag that "
             "overrides the axis (like --hidden over --depth); list each configuration once",
             it->second, i, r.id);
    // Two grid values can be one training: spelled two ways ("16,16" and "16, 16"; he_normal,
    // factor=2 and factor=2.0), or made alike by a flag that overrides another (--hidden over
    // --width). The initializer is compared by what its draws depend on.
    TrainConfig key = r.config;
    key.init = init_draws;
    key.init_args.clear();
    auto [same, unseen] = configs.emplace(key.to_json() + parsed.extras, r.id);
    GL_CHECK(unseen,
             "sweep: runs {} and {} would train the same configuration (a value given twice, "
             "perhaps spelled two ways, or a flag that overrides the axis, like --hidden over "
             "--width and --depth); list each configuration once",
             same->second, r.id);
    runs.push_back(std::move(r));
  }
  return runs;
}

std::vector<SweepRun> shard_runs(const std::vector<SweepRun>& runs, int k, int n) {
  GL_CHECK(n >= 1 && k >= 0 && k < n, "shard {}/{}: need 0 <= K < N", k, n);
  std::vector<SweepRun> out;
  for (const auto& r : runs)
    if (r.index % size_t(n) == size_t(k)) out.push_back(r);
  return out;
}

// ------------------------------------------------------------------ run directories
const char* status_name(RunStatus s) {
  switch (s) {
    case RunStatus::Pending:
      return "pending";
    case RunStatus::Partial:
      return "partial";
    case RunStatus::Finished:
      return "finished";
    case RunStatus::Diverged:
      return "diverged";
  }
  return "?";
}

std::string run_dir(const std::string& sweep_dir, const SweepRun& run) {
  return sweep_dir + "/runs/" + run.id;
}

RunState run_state(const std::string& dir, int64_t epochs) {
  RunState st;
  std::ifstream f(dir + "/metrics.csv");
  if (f) {
    std::string line;
    std::vector<std::string> header;
    auto split = [](const std::string& s) {
      std::vector<std::string> out;
      std::stringstream ss(s);
      std::string cell;
      while (std::getline(ss, cell, ',')) out.push_back(cell);
      return out;
    };
    if (std::getline(f, line)) header = split(line);
    auto col = [&](const char* name) {
      auto it = std::find(header.begin(), header.end(), name);
      return it == header.end() ? -1 : int(it - header.begin());
    };
    int ce = col("epoch"), ct = col("test_acc"), cr = col("train_acc"), cl = col("test_loss"),
        cti = col("epoch_time");
    auto num = [](const std::vector<std::string>& cells, int c) {
      if (c < 0 || size_t(c) >= cells.size()) return std::nan("");
      return std::strtod(cells[size_t(c)].c_str(), nullptr);
    };
    while (std::getline(f, line)) {
      if (line.empty()) continue;
      auto cells = split(line);
      if (ce < 0) break;
      st.epochs_done = int64_t(num(cells, ce));
      st.test_acc.push_back(num(cells, ct));
      st.train_acc.push_back(num(cells, cr));
      st.test_loss.push_back(num(cells, cl));
      st.epoch_time.push_back(num(cells, cti));
    }
  }
  // A damaged diverged.json says nothing: the run counts by its other files (training it again
  // removes the file, and a run that diverges writes it anew).
  if (std::optional<std::string> error = read_diverged_marker(dir)) {
    st.status = RunStatus::Diverged;
    st.error = *error;
  } else if (st.epochs_done >= epochs && io::file_exists(dir + "/model.safetensors")) {
    st.status = RunStatus::Finished;
  } else if (st.epochs_done > 0 || io::file_exists(dir + "/checkpoint.safetensors")) {
    st.status = RunStatus::Partial;
  }
  return st;
}

std::string summary_csv(const std::string& sweep_dir, const std::vector<SweepRun>& runs,
                        const std::vector<std::string>& axis_names) {
  std::string s = "run,activation,init,depth,seed";
  std::vector<std::string> extra;
  for (auto& a : axis_names)
    if (std::find(std::begin(kIdAxes), std::end(kIdAxes), a) == std::end(kIdAxes)) {
      extra.push_back(a);
      s += "," + a;
    }
  s += ",status,diverged,epochs,final_test_acc,best_test_acc,best_epoch,final_train_acc,"
       "final_test_loss,total_time\n";
  auto cell = [](std::string v) {
    // CSV without quoting: a list value such as hidden=128,64 keeps its parts apart with '|'.
    std::replace(v.begin(), v.end(), ',', '|');
    return v;
  };
  auto num = [](double v) { return std::isnan(v) ? std::string() : fmt::format("{:.9g}", v); };
  for (const auto& r : runs) {
    RunState st = run_state(run_dir(sweep_dir, r), r.config.epochs);
    if (st.status != RunStatus::Finished && st.status != RunStatus::Diverged) continue;
    const auto& c = r.config;
    std::string init = c.init;
    for (auto& [k, v] : c.init_args) init += ":" + k + "=" + v;
    s += fmt::format("{},{},{},{},{}", r.id, cell(c.activation), cell(init),
                     c.hidden_widths().size(), c.seed);
    for (auto& a : extra) {
      auto it =
          std::find_if(r.params.begin(), r.params.end(), [&](auto& p) { return p.first == a; });
      s += "," + cell(it == r.params.end() ? "" : value_text(it->second));
    }
    double final_acc = st.test_acc.empty() ? std::nan("") : st.test_acc.back();
    double best = std::nan("");
    int64_t best_epoch = 0;
    for (size_t e = 0; e < st.test_acc.size(); ++e)
      if (std::isfinite(st.test_acc[e]) && !(st.test_acc[e] <= best)) {
        best = st.test_acc[e];
        best_epoch = int64_t(e) + 1;
      }
    double total = 0;
    for (double t : st.epoch_time)
      if (std::isfinite(t)) total += t;
    s += fmt::format(",{},{},{},{},{},{},{},{},{:.3f}\n", status_name(st.status),
                     st.status == RunStatus::Diverged ? 1 : 0, st.epochs_done, num(final_acc),
                     num(best), best_epoch ? std::to_string(best_epoch) : std::string(),
                     num(st.train_acc.empty() ? std::nan("") : st.train_acc.back()),
                     num(st.test_loss.empty() ? std::nan("") : st.test_loss.back()), total);
  }
  return s;
}

double epoch_cost(const TrainConfig& cfg, int64_t train_split_size) {
  // The first layer's inputs: 3x32x32 CIFAR-10 images, 28x28 MNIST-style ones.
  double in = cfg.dataset == "cifar10" ? 3072 : 784, cost = 0;
  for (int64_t w : cfg.hidden_widths()) {
    cost += in * double(w);
    in = double(w);
  }
  // Examples per epoch: a swept --limit-train changes the cost as much as the widths do, up to
  // the size of the split, which a larger limit trains whole.
  const bool known = train_split_size > 0;
  int64_t examples = known ? train_split_size : 60000;
  if (cfg.limit_train > 0)
    examples = known ? std::min(cfg.limit_train, train_split_size) : cfg.limit_train;
  return (cost + in * 10) * double(examples);
}

}  // namespace gl::train
