// analyze.cpp: `gradlens analyze RUN_DIR corr|pca|tsne|augment|neurons|all`: representation
// analyses of a trained run, written to RUN_DIR/analysis (docs/run_directory.md); the next
// `gradlens report RUN_DIR` draws them.
#include <fmt/core.h>

#include <cmath>
#include <memory>
#include <sstream>

#include "analysis/capture.h"
#include "analysis/representation.h"
#include "kernels/cpu/fp_env.h"
#include "tools/command.h"

namespace gl::tools {
namespace {

std::vector<int64_t> parse_indices(const std::string& list) {
  std::vector<int64_t> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      long long v = std::stoll(item, &used);
      if (used != item.size() || v < 0) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw Error(
          fmt::format("--indices: '{}' is not an example index (expected e.g. 0,17,42)", item));
    }
  }
  return out;
}

const RegisterCommand reg{
    "analyze",
    "Representation analyses of a trained MLP run: layer correlation, PCA, t-SNE, augmentation "
    "invariance, neuron views (written to RUN_DIR/analysis)",
    [](CLI::App& sub) {
      struct Opts {
        std::string dir, what, data_dir, indices;
        bool no_activations = false;
        analysis::AnalyzeOptions a;
      };
      auto o = std::make_shared<Opts>();
      sub.add_option("RUN_DIR", o->dir, "Run directory written by gradlens train")->required();
      sub.add_option("ANALYSIS", o->what, "corr | pca | tsne | augment | neurons | all")
          ->required()
          ->check(CLI::IsMember({"corr", "pca", "tsne", "augment", "neurons", "all"}));
      sub.add_option("--layers", o->a.layers,
                     "Comma-separated layers: input, h0, h0.pre, ..., logits; 'all'; default: "
                     "every hidden layer");
      sub.add_option("--examples", o->a.examples.count,
                     "Number of examples, the split's first (default: corr 1000, pca/tsne/neurons "
                     "10000, or the whole split when smaller; with --class, all of the class)")
          ->transform(integer_in(0, kInt64Max, "0: the analysis's default"));
      sub.add_option("--split", o->a.examples.split, "train | test")->capture_default_str();
      sub.add_option("--class", o->a.examples.cls, "Only examples of this class")
          ->transform(integer_in(0, kInt64Max));
      sub.add_option("--indices", o->indices, "Explicit example indices, e.g. 0,5,9");
      sub.add_option("--data-dir", o->data_dir, "Dataset directory (default: the run's)");
      sub.add_option("--batch-size", o->a.batch_size, "Examples per forward pass")
          ->transform(integer_in(1, kInt64Max))
          ->capture_default_str();
      sub.add_flag("--no-activations", o->no_activations, "Do not write activations_<layer>.npy");
      sub.add_option("--perplexity", o->a.tsne.perplexity, "t-SNE perplexity")
          ->capture_default_str();
      sub.add_option("--iterations", o->a.tsne.iterations, "t-SNE iterations")
          ->transform(integer_in(1, kInt64Max))
          ->capture_default_str();
      sub.add_option("--theta", o->a.tsne.theta, "Barnes-Hut angle")->capture_default_str();
      sub.add_option("--method", o->a.tsne.method, "t-SNE: exact | barnes_hut | auto")
          ->capture_default_str();
      sub.add_option("--seed", o->a.augment.seed, "Augmentation seed")
          ->transform(integer_in(0, std::numeric_limits<uint64_t>::max()))
          ->capture_default_str();
      sub.add_option("--image", o->a.augment_index, "augment: index of the image in the split")
          ->transform(integer_in(0, kInt64Max))
          ->capture_default_str();
      sub.add_option("--augmentations", o->a.augmentations, "augment: number of augmentations")
          ->transform(integer_in(2, kInt64Max))
          ->capture_default_str();
      sub.add_option("--top-k", o->a.top_k, "neurons: top activating images per unit")
          ->transform(integer_in(1, kInt64Max))
          ->capture_default_str();
      sub.add_flag("--quiet", o->a.quiet, "Print nothing");
      sub.callback([o, &sub] {
        o->a.save_activations = !o->no_activations;
        const auto& a = o->a;
        // Checked before the run is loaded (the integer flags' ranges are checked as they are
        // parsed).
        GL_CHECK(std::isfinite(a.tsne.perplexity) && a.tsne.perplexity > 0,
                 "--perplexity must be a positive number, got {}", a.tsne.perplexity);
        GL_CHECK(std::isfinite(a.tsne.theta) && a.tsne.theta >= 0,
                 "--theta must be a number >= 0 (0: exact), got {}", a.tsne.theta);
        GL_CHECK(sub.count("--indices") == 0 || !o->indices.empty(),
                 "--indices: give at least one example index, e.g. 0,17,42");
        GL_CHECK(o->indices.empty() || (sub.count("--examples") == 0 && sub.count("--class") == 0),
                 "--indices names the examples itself: give it without --examples and --class");
        GL_CHECK(sub.count("--layers") == 0 || !a.layers.empty(),
                 "--layers: give at least one layer (input, h0, h0.pre, ..., logits, or all)");
        // t-SNE's settings with an analysis that runs no t-SNE would be ignored.
        const bool tsne = o->what == "tsne" || o->what == "all";
        for (const char* f : {"--perplexity", "--iterations", "--theta", "--method"})
          GL_CHECK(tsne || sub.count(f) == 0, "{} is a t-SNE setting: it needs the tsne analysis",
                   f);
        if (!o->indices.empty()) o->a.examples.indices = parse_indices(o->indices);
        auto run = analysis::load_run_model(o->dir, o->data_dir);
        // The run's subnormal mode (config.json), so the activations are the ones it computed.
        kernels::cpu::DenormalScope denormals(run.config.denormals == "flush");
        const std::string w = o->what;
        // Resolve the layers first so a bad name fails before any work.
        analysis::resolve_layers(*run.model, o->a.layers);
        if (w == "corr" || w == "all") analysis::analyze_corr(run, o->a);
        if (w == "pca" || w == "all") analysis::analyze_pca(run, o->a);
        if (w == "tsne" || w == "all") analysis::analyze_tsne(run, o->a);
        if (w == "augment" || w == "all") analysis::analyze_augment(run, o->a);
        if (w == "neurons" || w == "all") analysis::analyze_neurons(run, o->a);
        if (!o->a.quiet) fmt::print("wrote {}/analysis\n", o->dir);
      });
    }};

}  // namespace
}  // namespace gl::tools
