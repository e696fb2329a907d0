// test_gpu_check.cpp: scripts/gpu_check.sh with a bundle (scripts/gpu_bundle.sh's format) on a
// machine without a GPU: stand-in programs that record how they are called, in a bundle whose
// source hash matches a small source tree. It is unpacked instead of built, the GPU steps run
// its programs, the source folder it names is linked to the tree, a library the programs lack is
// found among the bundle's own and given to its programs alone, and the rest of the suite is
// left out. A bundle made from other sources is refused as stale, as is one whose programs do
// not start; a build folder holding files of its own is left alone; a nested build folder is
// made.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write(const std::string& path, const std::string& text, bool executable = false) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
  if (executable) fs::permissions(path, fs::perms::owner_all, fs::perm_options::add);
}

int run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// A tree with the two scripts, one source file, and a bundle made from it. Each stand-in program
// appends its name, arguments and library path to calls.txt (gradlens fails when `fail` is set);
// `ldd` (a stand-in first on PATH) reports libgl_missing.so.1 as not found, which the bundle's
// lib/ holds; nvidia-smi records its library path too.
struct Tree {
  std::string root;
  explicit Tree(bool gradlens_fails = false) {
    std::string tmpl = (fs::temp_directory_path() / "gl_test_gpu_check_XXXXXX").string();
    root = mkdtemp(tmpl.data());
    fs::create_directories(root + "/scripts");
    for (const char* s : {"gpu_check.sh", "source_hash.sh"})
      fs::copy_file(std::string(GRADLENS_SOURCE_DIR) + "/scripts/" + s, root + "/scripts/" + s);
    write(root + "/CMakeLists.txt", "project(x)\n");
    write(root + "/engine/a.cpp", "int a = 1;\n");
    const std::string b = root + "/stage/gpu-bundle";
    const std::string program =
        "#!/bin/sh\necho \"$(basename \"$0\" .bin | sed 's/^[.]//') $* "
        "[LD=$LD_LIBRARY_PATH]\" >>" +
        root + "/calls.txt\n";
    for (const char* p : {"gradlens", "tests/test_engine", "tests/test_kernels", "tests/test_train",
                          "tests/test_models", "bench/bench_cuda_gemm"})
      write(b + "/" + p, program, true);
    if (gradlens_fails) write(b + "/gradlens", program + "exit 1\n", true);
    write(b + "/lib/libgl_missing.so.1", "");
    write(root + "/fakebin/ldd",
          "#!/bin/sh\necho \"\tlibgl_missing.so.1 => not found\"\n"
          "echo \"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x0)\"\n",
          true);
    write(root + "/fakebin/nvidia-smi",
          "#!/bin/sh\necho \"nvidia-smi [LD=$LD_LIBRARY_PATH]\" >>" + root + "/calls.txt\n", true);
    EXPECT_EQ(run("cd " + root +
                  " && . scripts/source_hash.sh && { echo \"source_hash $(source_hash)\"; echo "
                  "'source_dir " +
                  root + "/elsewhere/src'; echo 'made now'; } >" + b + "/bundle.txt && tar -C " +
                  root + "/stage -cJf " + root + "/.gpu_bundle.tar.xz gpu-bundle"),
              0);
  }
  ~Tree() { fs::remove_all(root); }
  // gpu_check.sh's `tests` phase with the stand-ins first on PATH; its exit status.
  int check(int limit, const std::string& build = "build-gpu") const {
    return run("cd " + root + " && PATH=" + root +
               "/fakebin:$PATH PHASE_LIMIT=" + std::to_string(limit) +
               " bash scripts/gpu_check.sh " + build + " tests >" + root + "/out.txt 2>&1");
  }
  std::string summary() const { return slurp(root + "/gpu_check_logs/summary.txt"); }
  std::string calls() const { return slurp(root + "/calls.txt"); }
};

TEST(GpuCheck, UnpacksAFreshBundleAndRunsTheGpuStepsWithItsPrograms) {
  Tree t;
  EXPECT_EQ(t.check(120), 0) << slurp(t.root + "/out.txt");
  const std::string summary = slurp(t.root + "/gpu_check_logs/summary.txt");
  EXPECT_NE(summary.find("unpacked into build-gpu"), std::string::npos) << summary;
  EXPECT_NE(summary.find("ctest: not run, the programs came from the bundle"), std::string::npos)
      << summary;
  EXPECT_EQ(summary.find("configure"), std::string::npos) << summary;  // nothing was built
  const std::string calls = slurp(t.root + "/calls.txt");
  EXPECT_NE(calls.find("test_engine --gtest_filter=CudaParity"), std::string::npos) << calls;
  EXPECT_NE(calls.find("test_kernels --gtest_filter=Cuda*"), std::string::npos) << calls;
  EXPECT_NE(calls.find("test_train --gtest_filter=CudaTraining"), std::string::npos) << calls;
  EXPECT_NE(calls.find("test_models --gtest_filter=CudaOptimizer"), std::string::npos) << calls;
  EXPECT_NE(calls.find("gradlens train"), std::string::npos) << calls;
  EXPECT_NE(calls.find("bench_cuda_gemm"), std::string::npos) << calls;
  // The fixtures' folder, absent here, now leads to the tree; the missing library is the
  // bundle's.
  EXPECT_EQ(fs::canonical(t.root + "/elsewhere/src"), fs::canonical(t.root));
  EXPECT_TRUE(fs::exists(t.root + "/build-gpu/lib-needed/libgl_missing.so.1"));
  const std::string libs = fs::canonical(t.root).string() + "/build-gpu/lib-needed";
  EXPECT_NE(summary.find("its programs run with LD_LIBRARY_PATH=" + libs), std::string::npos)
      << summary;
  // Every program saw that path; nothing else did (nvidia-smi, and the PyTorch steps likewise).
  for (const char* p : {"gradlens train", "test_engine --gtest", "test_kernels --gtest",
                        "test_train --gtest", "test_models --gtest", "bench_cuda_gemm"}) {
    const size_t at = calls.find(p);
    ASSERT_NE(at, std::string::npos) << p;
    EXPECT_NE(calls.substr(at, calls.find('\n', at) - at).find("[LD=" + libs), std::string::npos)
        << calls;
  }
  const size_t smi = calls.find("nvidia-smi");
  ASSERT_NE(smi, std::string::npos) << calls;
  EXPECT_EQ(calls.substr(smi, calls.find('\n', smi) - smi).find("lib-needed"), std::string::npos)
      << calls;
}

TEST(GpuCheck, BuildsWhenTheBundlesProgramsDoNotStart) {
  Tree t(/*gradlens_fails=*/true);
  EXPECT_NE(t.check(20), 0);
  const std::string summary = t.summary();
  EXPECT_NE(summary.find("its programs do not start here (see bundle.log): building here"),
            std::string::npos)
      << summary;
  EXPECT_EQ(summary.find("unpacked into"), std::string::npos) << summary;
  // Tried with the missing library, then with all of the bundle's; no GPU step ran.
  EXPECT_EQ(t.calls().find("--gtest_filter"), std::string::npos) << t.calls();
  EXPECT_NE(t.calls().find("/build-gpu/lib:"), std::string::npos) << t.calls();
}

TEST(GpuCheck, LeavesABuildFolderOfItsOwnAlone) {
  Tree t;
  write(t.root + "/build-gpu/CMakeCache.txt", "# a build\n");
  EXPECT_NE(t.check(20), 0);
  EXPECT_NE(t.summary().find("bundle: not used, build-gpu holds files of its own"),
            std::string::npos)
      << t.summary();
  EXPECT_TRUE(fs::exists(t.root + "/build-gpu/CMakeCache.txt"));
}

TEST(GpuCheck, MakesANestedBuildFolder) {
  Tree t;
  EXPECT_EQ(t.check(120, "out/gpu/build"), 0) << slurp(t.root + "/out.txt");
  EXPECT_NE(t.summary().find("unpacked into out/gpu/build"), std::string::npos) << t.summary();
  EXPECT_NE(t.calls().find("test_engine --gtest_filter=CudaParity"), std::string::npos);
}

TEST(GpuCheck, RefusesABundleMadeFromOtherSources) {
  Tree t;
  write(t.root + "/engine/a.cpp", "int a = 2;\n");  // a source changed since the bundle
  // It builds instead, which fails here (no real sources) within the short limit.
  EXPECT_NE(t.check(20), 0);
  const std::string summary = slurp(t.root + "/gpu_check_logs/summary.txt");
  EXPECT_NE(summary.find("stale (made from other sources than these): building here"),
            std::string::npos)
      << summary;
  EXPECT_EQ(summary.find("unpacked into"), std::string::npos) << summary;
  for (const char* p : {"gradlens", "test_", "bench_cuda_gemm"})  // none of its programs ran
    EXPECT_EQ(t.calls().find(p), std::string::npos) << t.calls();
}

}  // namespace
