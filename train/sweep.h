// sweep.h: experiment sweeps over training flags. A SweepSpec holds fixed flags and grid axes
// (flag -> list of values); expand_grid turns it into runs in a deterministic order with stable,
// readable ids, so shards, resumed sweeps and merges all agree on which run is which. The run
// directories themselves are the source of truth: run_state() reads one back, and summary.csv is
// always rebuilt from them (docs/sweeps.md).
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "train/trainer.h"

namespace gl::train {

using ojson = nlohmann::ordered_json;

struct SweepSpec {
  std::string name = "sweep";
  // Training flag (canonical: no leading dashes, '-' not '_') -> value (string, number, bool, or
  // an array of strings for a repeatable flag such as init-arg).
  ojson fixed = ojson::object();
  // Axes in canonical order (activation, init, depth, others by name, seed); values as given.
  std::vector<std::pair<std::string, std::vector<ojson>>> axes;

  // The classic grid: relu, tanh, sigmoid, gelu x 8 initializers x depths 5..50, width 128,
  // lr 0.01, batch 128, seed 0, with per-layer diagnostics.
  static SweepSpec classic();
  // Reads {"name":..., "fixed": {...}, "grid": {flag: [values...]}}; errors name `source`.
  static SweepSpec from_json(const std::string& text, const std::string& source);
  // The same document written in TOML (name = ..., [fixed], [grid]); errors name `source` and,
  // for the TOML itself, the line and column. Floats TOML has and JSON lacks (inf, nan) are
  // refused.
  static SweepSpec from_toml(const std::string& text, const std::string& source);
  // Reads a sweep file: TOML when its name ends in ".toml", JSON otherwise.
  static SweepSpec from_file(const std::string& path);
  ojson to_json() const;

  // Sets or replaces an axis (values must be non-empty) / a fixed flag; keeps canonical order.
  void set_axis(const std::string& flag, std::vector<ojson> values);
  void set_fixed(const std::string& flag, ojson value);
};

// "--batch_size" -> "batch-size".
std::string canonical_flag(std::string key);
// An init value "he_normal:factor=6:mode=fan_out" or {"name": "he_normal", "factor": 6} in its
// canonical string form (arguments sorted by key).
std::string canonical_init(const ojson& value, const std::string& where);
// A value as it appears on the command line and in summary.csv.
std::string value_text(const ojson& value);

// What the tools layer knows about the training flags.
struct TrainFlagInfo {
  std::set<std::string> known;       // every flag name, canonical
  std::set<std::string> flags;       // those taking no value (true: present, false: absent)
  std::set<std::string> repeatable;  // those given more than once for a list (init-arg)
  // Parses training arguments (without --out) into a validated config, and the settings
  // outside it that change what a run does or writes (diagnostics, analyses) as text; throws
  // on bad input. Two runs of a grid with equal configs and extras are one run listed twice.
  struct Parsed {
    TrainConfig config;
    std::string extras;
  };
  std::function<Parsed(const std::vector<std::string>&)> parse;
  // Reads training arguments as the command line does (each value's type and range) without
  // building a configuration; throws on a bad value. When unset, values are checked only as
  // parts of whole runs (parse).
  std::function<void(const std::vector<std::string>&)> check;
};

struct SweepRun {
  size_t index = 0;  // position in the whole grid
  std::string id;    // e.g. tanh-xavier_normal-d20-s0, plus -h<hash> of any other axes
  std::vector<std::pair<std::string, ojson>> params;  // one per axis, canonical order
  std::vector<std::string> args;                      // training flags, without --out
  TrainConfig config;
};

// Checks one value of the training flag `flag` alone, as check_flag_values checks each; an error
// starts with `where`.
void check_flag_value(const std::string& flag, const ojson& value, const TrainFlagInfo& info,
                      const std::string& where);

// Checks each fixed flag and grid value of `spec` alone as a training flag; an error names
// `source` (the sweep file) and the key: "s.json: grid.seed: --seed: expected an integer ...".
void check_flag_values(const SweepSpec& spec, const TrainFlagInfo& info, const std::string& source);

// The whole grid, last axis fastest. Throws when a value is not one its flag takes
// (check_flag_values, naming "sweep") and when two runs would get the same id.
std::vector<SweepRun> expand_grid(const SweepSpec& spec, const TrainFlagInfo& info);

// Shard K of N (0 <= K < N) holds the runs whose grid index i has i % N == K.
std::vector<SweepRun> shard_runs(const std::vector<SweepRun>& runs, int k, int n);

enum class RunStatus { Pending, Partial, Finished, Diverged };
const char* status_name(RunStatus s);

struct RunState {
  RunStatus status = RunStatus::Pending;
  int64_t epochs_done = 0;                                         // rows in metrics.csv
  std::vector<double> test_acc, train_acc, test_loss, epoch_time;  // per metrics.csv row
  std::string error;                                               // diverged.json's message
};

// Finished: metrics.csv holds every epoch and model.safetensors exists. Diverged:
// diverged.json holds a JSON object (a damaged one is ignored). Partial: some metrics.csv rows
// or a checkpoint.
RunState run_state(const std::string& run_dir, int64_t epochs);

std::string run_dir(const std::string& sweep_dir, const SweepRun& run);

// summary.csv over `runs` (in the given order); runs neither finished nor diverged are left out.
std::string summary_csv(const std::string& sweep_dir, const std::vector<SweepRun>& runs,
                        const std::vector<std::string>& axis_names);

// A rough cost of one training epoch (multiply-adds) for ETA estimates, over the examples the
// epoch trains: --limit-train of them, at most the `train_split_size` of the training split
// (data::split_size; 0 when unknown: the limit, or 60000 without one).
double epoch_cost(const TrainConfig& cfg, int64_t train_split_size);

}  // namespace gl::train
