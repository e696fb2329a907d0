// test_slurm.cpp: a sweep as a Slurm job array, end to end, on a one-node cluster started in a
// temporary directory (munged with a temporary key, slurmctld and slurmd in the foreground as
// children of this test). Skips with a message where Slurm is not installed, we are not root,
// or the cluster does not come up; every wait is bounded and the daemons are always stopped.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace {

const std::string kBin = GRADLENS_BINARY;

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string tail(const std::string& path, size_t n = 1500) {
  std::string s = slurp(path);
  return s.size() > n ? s.substr(s.size() - n) : s;
}

// Runs a shell command with a time limit; returns its exit status and output.
std::pair<int, std::string> sh(const std::string& cmd, int seconds) {
  std::string full = "timeout -k 5 " + std::to_string(seconds) + " sh -c '" + cmd + "' 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return {-1, ""};
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int rc = pclose(p);
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, out};
}

class Daemons {
 public:
  ~Daemons() { stop(); }
  // Starts argv in the foreground as a child; output to `log`.
  void start(const std::vector<std::string>& argv, const std::string& log,
             const std::string& env_conf) {
    pid_t pid = fork();
    if (pid == 0) {
      setsid();
      if (!env_conf.empty()) setenv("SLURM_CONF", env_conf.c_str(), 1);
      FILE* f = freopen(log.c_str(), "a", stdout);
      (void)f;
      dup2(1, 2);
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      execv(a[0], a.data());
      _exit(127);
    }
    if (pid > 0) pids_.push_back(pid);
  }
  bool all_alive() {
    for (pid_t p : pids_)
      if (waitpid(p, nullptr, WNOHANG) != 0) return false;
    return true;
  }
  void stop() {
    // Reverse order: slurmd, slurmctld, then munged. Each gets SIGTERM, then SIGKILL.
    for (auto it = pids_.rbegin(); it != pids_.rend(); ++it) {
      kill(-*it, SIGTERM);
      kill(*it, SIGTERM);
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (waitpid(*it, nullptr, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
          kill(-*it, SIGKILL);
          kill(*it, SIGKILL);
          waitpid(*it, nullptr, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    pids_.clear();
  }

 private:
  std::vector<pid_t> pids_;
};

std::string which(const std::vector<std::string>& candidates) {
  for (auto& c : candidates)
    if (access(c.c_str(), X_OK) == 0) return c;
  return "";
}

}  // namespace

TEST(Slurm, SweepAsAJobArray) {
  const std::string munged = which({"/usr/sbin/munged", "/sbin/munged"});
  const std::string ctld = which({"/usr/sbin/slurmctld", "/sbin/slurmctld"});
  const std::string slurmd = which({"/usr/sbin/slurmd", "/sbin/slurmd"});
  const std::string sbatch = which({"/usr/bin/sbatch"});
  if (munged.empty() || ctld.empty() || slurmd.empty() || sbatch.empty())
    GTEST_SKIP() << "Slurm is not installed (apt-get install slurm-wlm munge)";
  if (geteuid() != 0) GTEST_SKIP() << "the one-node Slurm cluster needs root";

  std::string tmpl = (fs::temp_directory_path() / "gl_slurm_XXXXXX").string();
  const std::string t = mkdtemp(tmpl.data());
  for (auto d : {"state", "spool", "data", "munge"}) fs::create_directories(t + "/" + d);
  fs::permissions(t + "/munge",
                  fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  fs::create_symlink(std::string(GRADLENS_TEST_DATA) + "/mnist-tiny", t + "/data/mnist");
  {
    std::ofstream key(t + "/munge/munge.key", std::ios::binary);
    std::random_device rd;
    for (int i = 0; i < 1024; ++i) key.put(char(rd()));
  }
  fs::permissions(t + "/munge/munge.key", fs::perms::owner_read);
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::string node = std::string(host).substr(0, std::string(host).find('.'));
  // Ports from the pid, so tests running side by side do not collide.
  int base = 20000 + int(getpid() % 20000);
  const std::string conf = t + "/slurm.conf";
  std::ofstream(conf) << "ClusterName=gltest\nSlurmctldHost=" << node << "(127.0.0.1)\n"
                      << "SlurmUser=root\nSlurmdUser=root\n"
                      << "SlurmctldPort=" << base << "\nSlurmdPort=" << base + 1 << "\n"
                      << "AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket=" << t
                      << "/munge/munge.sock\n"
                      << "StateSaveLocation=" << t << "/state\nSlurmdSpoolDir=" << t << "/spool\n"
                      << "SlurmctldPidFile=" << t << "/slurmctld.pid\nSlurmdPidFile=" << t
                      << "/slurmd.pid\n"
                      << "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
                      << "SchedulerType=sched/builtin\nSelectType=select/cons_tres\n"
                      << "SelectTypeParameters=CR_CPU\nReturnToService=2\nMpiDefault=none\n"
                      << "JobCompType=jobcomp/none\nAccountingStorageType=accounting_storage/none\n"
                      << "JobAcctGatherType=jobacct_gather/none\nSlurmctldTimeout=30\n"
                      << "NodeName=" << node << " NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n"
                      << "PartitionName=debug Nodes=" << node
                      << " Default=YES MaxTime=INFINITE State=UP\n";
  // No cgroup plugin is needed with proctrack/linuxproc and task/none; autodetect must still
  // find a cgroup hierarchy, and IgnoreSystemd keeps it away from systemd.
  std::ofstream(t + "/cgroup.conf") << "CgroupPlugin=autodetect\nIgnoreSystemd=yes\n";

  Daemons daemons;
  daemons.start({munged, "-F", "-f", "--key-file=" + t + "/munge/munge.key",
                 "--socket=" + t + "/munge/munge.sock", "--pid-file=" + t + "/munge/munged.pid",
                 "--seed-file=" + t + "/munge/munge.seed", "--log-file=" + t + "/munge/munged.log"},
                t + "/munged.out", "");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  daemons.start({ctld, "-D", "-i", "-f", conf}, t + "/slurmctld.log", conf);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  daemons.start({slurmd, "-D", "-f", conf, "-N", node}, t + "/slurmd.log", conf);

  const std::string env = "SLURM_CONF=" + conf + " ";
  bool up = false;
  for (int i = 0; i < 60 && !up; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    if (!daemons.all_alive()) break;
    auto [rc, out] = sh(env + "sinfo -h -o %T", 5);
    up = rc == 0 && out.find("idle") != std::string::npos;
  }
  if (!up) {
    std::string why = "slurmctld.log:\n" + tail(t + "/slurmctld.log") + "\nslurmd.log:\n" +
                      tail(t + "/slurmd.log") + "\nmunged:\n" + tail(t + "/munged.out");
    daemons.stop();
    fs::remove_all(t);
    GTEST_SKIP() << "the one-node Slurm cluster did not come up within 30 s:\n" << why;
  }

  const std::string sweep = t + "/sweep";
  const std::string flags = "--data-dir " + t +
                            "/data --activations relu,tanh --inits he_normal,xavier_uniform "
                            "--depths 1,2 --width 8 --epochs 2 --diagnostics none";
  auto [rc, out] = sh(env + "GRADLENS=" + kBin + " sbatch --wait --array=0-2 --cpus-per-task=1 " +
                          "--chdir=" + t + " --output=" + t + "/task-%a.out " +
                          GRADLENS_SOURCE_DIR + "/tools/sweep.sbatch " + sweep + " " + flags,
                      180);
  std::string logs;
  for (int k = 0; k < 3; ++k) logs += tail(t + "/task-" + std::to_string(k) + ".out", 600);
  EXPECT_EQ(rc, 0) << out << "\n" << logs << "\nslurmd.log:\n" << tail(t + "/slurmd.log");
  for (int k = 0; k < 3; ++k)
    EXPECT_TRUE(fs::exists(sweep + "/summary-" + std::to_string(k) + "-of-3.csv")) << logs;
  auto [mrc, mout] = sh(kBin + " sweep merge " + sweep, 30);
  EXPECT_EQ(mrc, 0) << mout;
  // Every run of the 2 x 2 x 2 grid, finished, once.
  std::stringstream summary(slurp(sweep + "/summary.csv"));
  int rows = 0, finished = 0;
  for (std::string l; std::getline(summary, l);) {
    if (l.empty() || l.rfind("run,", 0) == 0) continue;
    ++rows;
    finished += l.find(",finished,") != std::string::npos;
  }
  EXPECT_EQ(rows, 8);
  EXPECT_EQ(finished, 8);
  daemons.stop();
  fs::remove_all(t);
}
