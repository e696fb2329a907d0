// test_sweep_cli.cpp: `gradlens sweep` end to end on the mnist-tiny fixture: a sweep killed in
// the middle and run again ends with the same summary.csv, metrics.csv (times aside) and model
// files as an uninterrupted one, with and without --fuse; a fused sweep equals the sweep
// without; shards listed for every N cover the grid once; shards run apart and
// merged equal the whole sweep; a diverging run is recorded and the sweep goes on; the sweep
// report draws the grid; a sweep file in TOML runs the sweep of its JSON form.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace {

const std::string kBin = GRADLENS_BINARY;

std::string temp_dir() {
  static std::string dir = [] {
    std::string tmpl = (fs::temp_directory_path() / "gl_test_sweep_cli_XXXXXX").string();
    std::string d = mkdtemp(tmpl.data());
    fs::create_directories(d + "/data");
    fs::create_symlink(std::string(GRADLENS_TEST_DATA) + "/mnist-tiny", d + "/data/mnist");
    return d;
  }();
  return dir;
}

// A small grid: 2 activations x 2 inits x 2 depths, width 8, 2 epochs on 800 digits.
std::string grid_flags() {
  return " --data-dir " + temp_dir() +
         "/data --activations relu,tanh --inits he_normal,xavier_uniform --depths 1,2 --width 8 "
         "--epochs 2 --batch-size 64 --diagnostics none --no-progress";
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

// The CSV without the named columns (times differ between runs).
std::string drop_columns(const std::string& csv, const std::set<std::string>& names) {
  auto rows = lines_of(csv);
  if (rows.empty()) return "";
  auto split = [](const std::string& s) {
    std::vector<std::string> cells;
    std::stringstream ss(s);
    for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
    if (!s.empty() && s.back() == ',') cells.push_back("");
    return cells;
  };
  auto header = split(rows[0]);
  std::string out;
  for (auto& r : rows) {
    auto cells = split(r);
    for (size_t i = 0; i < cells.size(); ++i)
      if (i >= header.size() || !names.count(header[i])) out += cells[i] + ",";
    out += "\n";
  }
  return out;
}

std::set<std::string> run_ids(const std::string& sweep) {
  std::set<std::string> ids;
  for (auto& e : fs::directory_iterator(sweep + "/runs")) ids.insert(e.path().filename().string());
  return ids;
}

void expect_same_results(const std::string& a, const std::string& b) {
  EXPECT_EQ(drop_columns(slurp(a + "/summary.csv"), {"total_time"}),
            drop_columns(slurp(b + "/summary.csv"), {"total_time"}));
  EXPECT_EQ(lines_of(slurp(a + "/summary.csv")).size(), 9u);
  ASSERT_EQ(run_ids(a), run_ids(b));
  for (auto& id : run_ids(a)) {
    std::string ma = slurp(a + "/runs/" + id + "/metrics.csv");
    EXPECT_EQ(lines_of(ma).size(), 3u) << id;
    EXPECT_EQ(drop_columns(ma, {"epoch_time"}),
              drop_columns(slurp(b + "/runs/" + id + "/metrics.csv"), {"epoch_time"}))
        << id;
    const std::string wa = slurp(a + "/runs/" + id + "/model.safetensors");
    EXPECT_FALSE(wa.empty()) << id;
    EXPECT_TRUE(wa == slurp(b + "/runs/" + id + "/model.safetensors")) << id << ": weights differ";
  }
}

int run(const std::string& args) {
  std::string cmd = kBin + " " + args + " > " + temp_dir() + "/last.log 2>&1";
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Removes the shared temporary directory after the last test.
class CleanUp : public ::testing::Environment {
 public:
  void TearDown() override { fs::remove_all(temp_dir()); }
};
const auto* const kCleanUp = ::testing::AddGlobalTestEnvironment(new CleanUp);

const std::string& reference_sweep() {
  static std::string dir = [] {
    std::string d = temp_dir() + "/whole";
    EXPECT_EQ(run("sweep --out " + d + " --jobs 2" + grid_flags()), 0)
        << slurp(temp_dir() + "/last.log");
    return d;
  }();
  return dir;
}

// Starts `sweep --out d <flags>` and SIGKILLs it (like a lost node) once the first checkpoint of
// some run exists but before the sweep is done; then runs `sweep --out d <restart_flags>` to
// the end.
void kill_and_restart(const std::string& d, const std::string& flags,
                      const std::string& restart_flags) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string cmd = "exec " + kBin + " sweep --out " + d + flags + " >/dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
    _exit(127);
  }
  bool killed_midway = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    int st = 0;
    if (waitpid(pid, &st, WNOHANG) == pid) break;
    bool started = false;
    if (fs::exists(d + "/runs"))
      for (auto& e : fs::directory_iterator(d + "/runs"))
        started |= fs::exists(e.path() / "checkpoint.safetensors");
    if (started) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      killed_midway = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(killed_midway) << "the sweep ended before it could be interrupted";
  // Workers die with the sweep (PR_SET_PDEATHSIG); give the kernel a moment to reap them.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  size_t done_before =
      fs::exists(d + "/summary.csv") ? lines_of(slurp(d + "/summary.csv")).size() - 1 : 0;
  EXPECT_LT(done_before, 8u);
  ASSERT_EQ(run("sweep --out " + d + restart_flags), 0) << slurp(temp_dir() + "/last.log");
}

}  // namespace

TEST(SweepCli, KilledAndRestartedEqualsUninterrupted) {
  const std::string& whole = reference_sweep();
  std::string d = temp_dir() + "/killed";
  ASSERT_NO_FATAL_FAILURE(
      kill_and_restart(d, " --jobs 2" + grid_flags(), " --jobs 2" + grid_flags()));
  expect_same_results(whole, d);
  // A third invocation finds everything done and trains nothing.
  auto before = fs::last_write_time(d + "/runs/relu-he_normal-d1-s0/model.safetensors");
  ASSERT_EQ(run("sweep --out " + d + " --jobs 2" + grid_flags()), 0);
  EXPECT_EQ(before, fs::last_write_time(d + "/runs/relu-he_normal-d1-s0/model.safetensors"));
  // A different grid in the same directory is refused.
  EXPECT_NE(run("sweep --out " + d + grid_flags() + " --lr 0.5"), 0);
  EXPECT_NE(slurp(temp_dir() + "/last.log").find("different sweep"), std::string::npos);
}

TEST(SweepCli, FusedSweepEqualsTheSweepWithout) {
  const std::string& whole = reference_sweep();
  std::string d = temp_dir() + "/fused";
  // The grid's 8 runs make two groups (one per depth) of 4, run as 2 processes.
  ASSERT_EQ(run("sweep --out " + d + " --jobs 2 --fuse" + grid_flags()), 0)
      << slurp(temp_dir() + "/last.log");
  expect_same_results(whole, d);
  int groups = 0, fused_members = 0;
  for (auto& id : run_ids(d)) {
    std::string log = slurp(d + "/runs/" + id + "/train.log");
    groups += log.find("fused steps") != std::string::npos;
    fused_members += log.find("trained fused with") != std::string::npos;
  }
  EXPECT_EQ(groups, 2);
  EXPECT_EQ(fused_members, 6);
  // `sweep group` names what it cannot find.
  EXPECT_NE(run("sweep group " + d + " relu-nope-d1-s0"), 0);
  EXPECT_NE(slurp(temp_dir() + "/last.log").find("no run 'relu-nope-d1-s0'"), std::string::npos);
  EXPECT_NE(run("sweep --out " + d + " --fuse 1" + grid_flags()), 0);
  EXPECT_NE(slurp(temp_dir() + "/last.log").find("--fuse"), std::string::npos);
}

TEST(SweepCli, FuseSaysWhichRunsTrainAloneAndWhy) {
  // Dropout keeps runs out of the fused step: they train one per process, and the sweep says so
  // (naming the flag) instead of ignoring --fuse silently.
  std::string d = temp_dir() + "/fuse-alone";
  ASSERT_EQ(run("sweep --out " + d + " --fuse --dropout 0.1 --data-dir " + temp_dir() +
                "/data --activations relu --inits he_normal,xavier_uniform --depths 1 --width 8 "
                "--epochs 1 --batch-size 64 --limit-train 256 --limit-test 128 --diagnostics "
                "none --no-progress"),
            0)
      << slurp(temp_dir() + "/last.log");
  const std::string log = slurp(temp_dir() + "/last.log");
  EXPECT_NE(log.find("--fuse: 2 of 2 runs train alone"), std::string::npos) << log;
  EXPECT_NE(log.find("--dropout"), std::string::npos) << log;
  for (auto& id : run_ids(d))
    EXPECT_EQ(slurp(d + "/runs/" + id + "/train.log").find("fused steps"), std::string::npos);
}

TEST(SweepCli, AFailedFusedGroupRetriesItsRunsAlone) {
  // One run of a group holds a corrupt checkpoint: resuming it fails, and with it the group's
  // process. The sweep then trains the group's runs one per process: the others finish, and
  // the bad one fails alone, its error naming its file.
  std::string d = temp_dir() + "/fuse-bad-member";
  const std::string flags = " --fuse --data-dir " + temp_dir() +
                            "/data --activations relu --inits he_normal,xavier_uniform,normal "
                            "--depths 1 --width 8 --epochs 1 --batch-size 64 --limit-train 256 "
                            "--limit-test 128 --diagnostics none --no-progress";
  const std::string bad = d + "/runs/relu-xavier_uniform-d1-s0";
  fs::create_directories(bad);
  std::ofstream(bad + "/checkpoint.safetensors") << "not a safetensors file";
  EXPECT_NE(run("sweep --out " + d + flags), 0);
  const std::string log = slurp(temp_dir() + "/last.log");
  EXPECT_NE(log.find("a fused group of 3 failed"), std::string::npos) << log;
  EXPECT_NE(log.find("1 of 3 runs failed"), std::string::npos) << log;
  EXPECT_NE(log.find("relu-xavier_uniform-d1-s0 (exit"), std::string::npos) << log;
  EXPECT_NE(log.find("checkpoint.safetensors"), std::string::npos) << log;
  for (std::string id : {"relu-he_normal-d1-s0", "relu-normal-d1-s0"})
    EXPECT_TRUE(fs::exists(d + "/runs/" + id + "/model.safetensors")) << id << "\n" << log;
  EXPECT_FALSE(fs::exists(bad + "/model.safetensors"));
}

TEST(SweepCli, TensorBoardIsOnOffAndEachRunWritesItsOwn) {
  // train's --tensorboard [DIR] is on/off in a sweep: every run writes <run>/tensorboard (one
  // directory for all would mix their event files); a directory in a sweep file is refused.
  std::string d = temp_dir() + "/tensorboard";
  const std::string flags = " --data-dir " + temp_dir() +
                            "/data --activations relu --inits he_normal --depths 1 --seeds 0,1 "
                            "--width 8 --epochs 1 --limit-train 128 --limit-test 64 "
                            "--diagnostics none --no-progress";
  ASSERT_EQ(run("sweep --out " + d + flags + " --tensorboard"), 0)
      << slurp(temp_dir() + "/last.log");
  for (std::string id : {"relu-he_normal-d1-s0", "relu-he_normal-d1-s1"}) {
    int events = 0;
    const fs::path tb = d + "/runs/" + id + "/tensorboard";
    if (fs::exists(tb))
      for (auto& e : fs::directory_iterator(tb))
        events += e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
    EXPECT_EQ(events, 1) << id;
  }
  EXPECT_NE(run("sweep --out " + temp_dir() + "/tb-dir" + flags + " --tensorboard tb"), 0);
  EXPECT_NE(slurp(temp_dir() + "/last.log").find("--tensorboard tb: in a sweep every run writes"),
            std::string::npos)
      << slurp(temp_dir() + "/last.log");
  const std::string spec = temp_dir() + "/tb.json";
  std::ofstream(spec) << R"({"fixed": {"tensorboard": "tb"}, "grid": {"seed": [0, 1]}})";
  EXPECT_NE(run("sweep " + spec + " --out " + temp_dir() + "/tb-file" + flags), 0);
  EXPECT_NE(slurp(temp_dir() + "/last.log").find("--tensorboard is an on/off flag"),
            std::string::npos)
      << slurp(temp_dir() + "/last.log");
}

TEST(SweepCli, FusedSweepKilledAndRestartedEqualsUninterrupted) {
  // Killed while its groups train (members checkpoint one after another, so they may stop at
  // different epochs), then finished with other groups of 3 and with --jobs 1.
  const std::string& whole = reference_sweep();
  std::string d = temp_dir() + "/fused-killed";
  ASSERT_NO_FATAL_FAILURE(
      kill_and_restart(d, " --jobs 2 --fuse" + grid_flags(), " --jobs 1 --fuse 3" + grid_flags()));
  expect_same_results(whole, d);
}

// A sweep file in TOML is the sweep of its JSON form: a sweep started from the TOML file is
// continued by the JSON one in the same directory (sweep.json guards it against any other grid).
TEST(SweepCli, TomlSweepFileRunsTheSweepOfItsJsonForm) {
  const std::string toml = temp_dir() + "/lr.toml", json = temp_dir() + "/lr.json";
  std::ofstream(toml) << "# two learning rates\n"
                         "[fixed]\n"
                         "width = 8\n"
                         "epochs = 1\n"
                         "batch-size = 64\n"
                         "diagnostics = 'none'\n"
                         "\n"
                         "[grid]\n"
                         "activation = [\"relu\"]\n"
                         "init = [{name = \"he_normal\", factor = 6}]\n"
                         "lr = [0.1, 1e-2]\n";
  std::ofstream(json) << R"({"fixed": {"width": 8, "epochs": 1, "batch-size": 64,
      "diagnostics": "none"}, "grid": {"activation": ["relu"],
      "init": [{"name": "he_normal", "factor": 6}], "lr": [0.1, 0.01]}})";
  const std::string d = temp_dir() + "/toml-sweep";
  const std::string data = " --data-dir " + temp_dir() + "/data --no-progress";
  ASSERT_EQ(run("sweep " + toml + " --out " + d + data), 0) << slurp(temp_dir() + "/last.log");
  ASSERT_EQ(run("sweep " + toml + " --out " + d + data + " --list"), 0);
  const std::vector<std::string> listed = lines_of(slurp(temp_dir() + "/last.log"));
  ASSERT_EQ(listed.size(), 2u);
  for (const auto& l : listed)
    EXPECT_NE(l.find("relu-he_normal_factor6-d2-s0-h"), std::string::npos) << l;
  ASSERT_EQ(run("sweep " + json + " --out " + d + data + " --list"), 0)
      << slurp(temp_dir() + "/last.log");
  EXPECT_EQ(lines_of(slurp(temp_dir() + "/last.log")), listed);
  for (const auto& l : listed) EXPECT_NE(l.find(" finished"), std::string::npos) << l;
  // Not vacuous: another grid is refused in that directory.
  std::ofstream(temp_dir() + "/other.toml")
      << slurp(toml).replace(slurp(toml).find("1e-2"), 4, "1e-3");
  EXPECT_NE(run("sweep " + temp_dir() + "/other.toml --out " + d + data + " --list"), 0);

  // An error in the TOML stops the sweep naming the file, the line and the column.
  std::ofstream(temp_dir() + "/bad.toml") << "[grid]\nlr = [0.1, 0.01] x\n";
  EXPECT_NE(run("sweep " + temp_dir() + "/bad.toml --out " + temp_dir() + "/bad --list"), 0);
  EXPECT_NE(slurp(temp_dir() + "/last.log")
                .find("bad.toml:2:18: expected the end of the line after the value of lr, got 'x'"),
            std::string::npos)
      << slurp(temp_dir() + "/last.log");
  EXPECT_FALSE(fs::exists(temp_dir() + "/bad"));
  ASSERT_EQ(run("sweep --help"), 0);
  EXPECT_NE(slurp(temp_dir() + "/last.log").find("TOML when its name ends in .toml"),
            std::string::npos);
}

TEST(SweepCli, ShardListsCoverTheGridOnceForEveryN) {
  // The oracle: the grid written out by hand.
  std::set<std::string> expected;
  for (std::string a : {"relu", "tanh"})
    for (std::string i : {"he_normal", "xavier_uniform"})
      for (int dpt : {1, 2}) expected.insert(a + "-" + i + "-d" + std::to_string(dpt) + "-s0");
  for (int n = 1; n <= 9; ++n) {
    std::multiset<std::string> seen;
    for (int k = 0; k < n; ++k) {
      ASSERT_EQ(run("sweep --list --out " + temp_dir() + "/nowhere --shard " + std::to_string(k) +
                    "/" + std::to_string(n) + grid_flags()),
                0);
      for (auto& l : lines_of(slurp(temp_dir() + "/last.log")))
        seen.insert(l.substr(0, l.find(' ')));
    }
    EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected) << "N=" << n;
    EXPECT_EQ(seen.size(), expected.size()) << "N=" << n << ": a run appears twice";
  }
  EXPECT_NE(run("sweep --list --out x --shard 3/3" + grid_flags()), 0);
}

TEST(SweepCli, ShardsMergedEqualTheWholeSweep) {
  const std::string& whole = reference_sweep();
  std::string p0 = temp_dir() + "/part0", p1 = temp_dir() + "/part1";
  ASSERT_EQ(run("sweep --out " + p0 + " --shard 0/2" + grid_flags()), 0);
  ASSERT_EQ(run("sweep --out " + p1 + " --shard 1/2" + grid_flags()), 0);
  EXPECT_EQ(run_ids(p0).size(), 4u);
  EXPECT_EQ(run_ids(p1).size(), 4u);
  EXPECT_TRUE(fs::exists(p0 + "/summary-0-of-2.csv"));
  // Merging one part alone reports the missing runs, and writes no summary that would look
  // whole.
  EXPECT_NE(run("sweep merge " + p1), 0);
  EXPECT_FALSE(fs::exists(p1 + "/summary.csv"));
  // The same flag twice on the command line is refused before anything runs.
  EXPECT_NE(run("sweep --out " + temp_dir() + "/twice --grid momentum=0 --grid momentum=0.5" +
                grid_flags()),
            0);
  EXPECT_NE(slurp(temp_dir() + "/last.log").find("--momentum is given twice"), std::string::npos)
      << slurp(temp_dir() + "/last.log");
  EXPECT_FALSE(fs::exists(temp_dir() + "/twice/runs"));
  // --list of another sweep's directory says so instead of listing its runs as partial.
  EXPECT_NE(run("sweep --out " + whole + " --list --lr 0.5" + grid_flags()), 0);
  EXPECT_NE(slurp(temp_dir() + "/last.log").find("holds a different sweep"), std::string::npos)
      << slurp(temp_dir() + "/last.log");
  ASSERT_EQ(run("sweep merge " + p0 + " " + p1), 0) << slurp(temp_dir() + "/last.log");
  expect_same_results(whole, p0);
}

// While another process holds a sweep's (or a shard's) lock, a second start on the same
// directory stops before training anything; another shard of it is not held up.
TEST(SweepCli, ASecondProcessOnTheSameRunsStops) {
  const std::string out = temp_dir() + "/locked";
  fs::create_directories(out);
  const int fd = ::open((out + "/.lock-0-of-2").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  EXPECT_NE(run("sweep --out " + out + " --shard 0/2" + grid_flags()), 0);
  const std::string log = slurp(temp_dir() + "/last.log");
  EXPECT_NE(log.find("another process is running shard 0/2"), std::string::npos) << log;
  EXPECT_TRUE(run_ids(out).empty());
  EXPECT_EQ(run("sweep --out " + out + " --shard 1/2" + grid_flags()), 0)
      << slurp(temp_dir() + "/last.log");
  EXPECT_EQ(run_ids(out).size(), 4u);
  ::close(fd);  // released: the held shard runs now
  EXPECT_EQ(run("sweep --out " + out + " --shard 0/2" + grid_flags()), 0)
      << slurp(temp_dir() + "/last.log");
  EXPECT_EQ(run_ids(out).size(), 8u);
  // The whole sweep and a shard exclude each other: a shard holds .lock shared, the whole sweep
  // holds it exclusively.
  const int whole = ::open((out + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(whole, 0);
  ASSERT_EQ(::flock(whole, LOCK_SH | LOCK_NB), 0);  // as a running shard does
  EXPECT_NE(run("sweep --out " + out + grid_flags()), 0);
  EXPECT_NE(slurp(temp_dir() + "/last.log").find("another process is running this sweep"),
            std::string::npos)
      << slurp(temp_dir() + "/last.log");
  EXPECT_EQ(run("sweep --out " + out + " --shard 1/2" + grid_flags()), 0)
      << slurp(temp_dir() + "/last.log");
  ASSERT_EQ(::flock(whole, LOCK_EX | LOCK_NB), 0);  // as the whole sweep does
  EXPECT_NE(run("sweep --out " + out + " --shard 1/2" + grid_flags()), 0);
  EXPECT_NE(slurp(temp_dir() + "/last.log").find("the whole sweep (no --shard)"), std::string::npos)
      << slurp(temp_dir() + "/last.log");
  ::close(whole);
}

// A part's run that looks finished but whose metrics.csv or weights are damaged is not merged
// as finished: merge fails naming it.
TEST(SweepCli, MergeLeavesDamagedRunsOut) {
  const std::string a = temp_dir() + "/dmg0", b = temp_dir() + "/dmg1";
  ASSERT_EQ(run("sweep --out " + a + " --shard 0/2" + grid_flags()), 0);
  ASSERT_EQ(run("sweep --out " + b + " --shard 1/2" + grid_flags()), 0);
  const auto ids = run_ids(b);
  ASSERT_GE(ids.size(), 2u);
  const std::string first = b + "/runs/" + *ids.begin(), second = b + "/runs/" + *++ids.begin();
  std::ofstream(first + "/metrics.csv", std::ios::app) << "3,x,1,0.5,0.5,1\n";
  fs::resize_file(second + "/model.safetensors", 100);
  EXPECT_NE(run("sweep merge " + a + " " + b), 0);
  const std::string log = slurp(temp_dir() + "/last.log");
  EXPECT_NE(log.find("2 of them damaged in a part, not merged"), std::string::npos) << log;
  EXPECT_NE(log.find(*ids.begin()), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(a + "/runs/" + *ids.begin() + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(a + "/summary.csv"));
}

// A part's run whose config.json is not the configuration the sweep gives that run (edited
// afterwards, or another sweep's), or whose diverged.json lacks what the trainer writes, is
// refused by name before anything is copied.
TEST(SweepCli, MergeRefusesRunsThatAreNotTheSweeps) {
  const std::string a = temp_dir() + "/cfg0", b = temp_dir() + "/cfg1";
  const std::string flags = " --data-dir " + temp_dir() +
                            "/data --activations relu,tanh --inits he_normal --depths 1 --width 8 "
                            "--epochs 1 --limit-train 128 --diagnostics none --no-progress";
  ASSERT_EQ(run("sweep --out " + a + " --shard 0/2" + flags), 0) << slurp(temp_dir() + "/last.log");
  ASSERT_EQ(run("sweep --out " + b + " --shard 1/2" + flags), 0) << slurp(temp_dir() + "/last.log");
  const auto ids = run_ids(b);
  ASSERT_EQ(ids.size(), 1u);
  const std::string id = *ids.begin(), config = b + "/runs/" + id + "/config.json";
  const std::string original = slurp(config);
  std::string edited = original;
  const size_t lr = edited.find("\"lr\": 0.01");
  ASSERT_NE(lr, std::string::npos) << edited;
  edited.replace(lr, 10, "\"lr\": 0.5");
  std::ofstream(config, std::ios::trunc) << edited;
  EXPECT_NE(run("sweep merge " + a + " " + b), 0);
  std::string log = slurp(temp_dir() + "/last.log");
  EXPECT_NE(log.find(config + ": lr is 0.5, but the sweep's run " + id + " has lr 0.01"),
            std::string::npos)
      << log;
  EXPECT_FALSE(fs::exists(a + "/runs/" + id));
  EXPECT_FALSE(fs::exists(a + "/summary.csv"));
  std::ofstream(config, std::ios::trunc) << original;
  std::ofstream(b + "/runs/" + id + "/diverged.json") << "{}";
  EXPECT_NE(run("sweep merge " + a + " " + b), 0);
  log = slurp(temp_dir() + "/last.log");
  EXPECT_NE(log.find("a damaged diverged.json"), std::string::npos) << log;
  EXPECT_NE(log.find("diverged.json: key 'error': missing"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(a + "/runs/" + id));
  fs::remove(b + "/runs/" + id + "/diverged.json");
  EXPECT_EQ(run("sweep merge " + a + " " + b), 0) << slurp(temp_dir() + "/last.log");
  EXPECT_TRUE(fs::exists(a + "/summary.csv"));
}

TEST(SweepCli, DivergingRunIsRecordedAndTheSweepGoesOn) {
  std::string d = temp_dir() + "/diverge";
  // lr 1e10 with SGD blows up in the first steps (NaN loss); lr 0.01 trains.
  std::string flags = " --data-dir " + temp_dir() +
                      "/data --activations relu --inits he_normal --depths 2 --width 8 --epochs 2 "
                      "--lrs 1e10,0.01 --diagnostics none --no-progress";
  ASSERT_EQ(run("sweep --out " + d + flags), 0) << slurp(temp_dir() + "/last.log");
  auto rows = lines_of(slurp(d + "/summary.csv"));
  ASSERT_EQ(rows.size(), 3u);
  int diverged = 0, finished = 0;
  for (size_t r = 1; r < rows.size(); ++r) {
    diverged += rows[r].find(",diverged,1,") != std::string::npos;
    finished += rows[r].find(",finished,0,2,") != std::string::npos;
  }
  EXPECT_EQ(diverged, 1) << slurp(d + "/summary.csv");
  EXPECT_EQ(finished, 1) << slurp(d + "/summary.csv");
  // Resuming does not retry the diverged run.
  std::string log;
  for (auto& e : fs::directory_iterator(d + "/runs"))
    if (fs::exists(e.path() / "diverged.json")) log = (e.path() / "train.log").string();
  ASSERT_FALSE(log.empty());
  std::string before = slurp(log);
  ASSERT_EQ(run("sweep --out " + d + flags), 0);
  EXPECT_EQ(before, slurp(log));
}

TEST(SweepCli, ReportOfAGridWithAnotherAxisDrawsEachValueApart) {
  // A grid that also varies lr: one set of figures per lr, each cell of the accuracy heatmap
  // its own run's accuracy (they were averaged over the lrs, and curves took the first run).
  std::string d = temp_dir() + "/lrs";
  ASSERT_EQ(run("sweep --out " + d + " --data-dir " + temp_dir() +
                "/data --activations relu --inits he_normal --depths 1 --lrs 0.5,0.01 --width 8 "
                "--epochs 1 --limit-test 100 --diagnostics none --no-progress"),
            0)
      << slurp(temp_dir() + "/last.log");
  ASSERT_EQ(run("report " + d), 0) << slurp(temp_dir() + "/last.log");
  const std::string html = slurp(d + "/report.html");
  EXPECT_NE(html.find("This grid also varies lr"), std::string::npos);
  std::map<std::string, double> acc;  // lr -> final test accuracy, from summary.csv
  auto rows = lines_of(slurp(d + "/summary.csv"));
  ASSERT_EQ(rows.size(), 3u);
  for (size_t r = 1; r < rows.size(); ++r) {
    std::vector<std::string> c;
    std::stringstream ss(rows[r]);
    for (std::string cell; std::getline(ss, cell, ',');) c.push_back(cell);
    acc[c[5]] = std::stod(c[9]);  // run,activation,init,depth,seed,lr,status,diverged,epochs,final
  }
  ASSERT_NE(acc.begin()->second, acc.rbegin()->second) << "the two lrs should differ";
  // A grid over --hidden of one width is a grid over depth: one set of figures.
  const std::string spec = temp_dir() + "/hidden.json";
  std::ofstream(spec) << R"({"grid": {"hidden": ["8", "8,8"]}})";
  const std::string h = temp_dir() + "/hidden";
  ASSERT_EQ(run("sweep " + spec + " --out " + h + " --data-dir " + temp_dir() +
                "/data --epochs 1 --limit-test 100 --diagnostics none --no-progress"),
            0)
      << slurp(temp_dir() + "/last.log");
  ASSERT_EQ(run("report " + h), 0) << slurp(temp_dir() + "/last.log");
  EXPECT_EQ(slurp(h + "/report.html").find("This grid also varies"), std::string::npos);
  for (int k = 0; k < 2; ++k) {
    const std::string v = "v" + std::to_string(k) + "-";
    const size_t head = html.rfind("<h2 class=\"variant\">lr=", html.find("id=\"" + v + "depth"));
    ASSERT_NE(head, std::string::npos);
    const size_t name = head + std::string("<h2 class=\"variant\">lr=").size();
    const std::string lr = html.substr(name, html.find('<', name) - name);
    ASSERT_TRUE(acc.count(lr)) << lr;
    const size_t cell = html.find("data-value=\"", html.find("id=\"" + v + "depth"));
    ASSERT_LT(cell, html.find("id=\"" + v + "epochs"));
    EXPECT_NEAR(std::stod(html.substr(cell + 12)), 100 * acc[lr], 1e-6) << lr;
  }
}

TEST(SweepCli, ReportOfASweepDirectory) {
  std::string d = temp_dir() + "/hefactor";
  std::string flags = " --data-dir " + temp_dir() +
                      "/data --activations relu --inits he_normal:factor=1,he_normal:factor=6 "
                      "--depths 1,3 --width 8 --epochs 1 --diagnostics none --no-progress";
  ASSERT_EQ(run("sweep --out " + d + flags), 0) << slurp(temp_dir() + "/last.log");
  ASSERT_EQ(run("report " + d), 0) << slurp(temp_dir() + "/last.log");
  std::string html = slurp(d + "/report.html");
  for (std::string id : {"relu-he_normal_factor1-d1-s0", "relu-he_normal_factor6-d3-s0"})
    EXPECT_NE(html.find(id), std::string::npos) << id;
  EXPECT_NE(html.find("factor 6"), std::string::npos);  // the He factor comparison is drawn
  EXPECT_NE(html.find("Final test accuracy against depth"), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org"));  // no network references
  // --classes is for a run's report: on a sweep it was ignored silently.
  EXPECT_NE(run("report " + d + " --classes 3"), 0);
  EXPECT_NE(slurp(temp_dir() + "/last.log").find("is a sweep"), std::string::npos);
}
