// graph.cpp: `gradlens graph`: the autograd tape of one training step of an MLP (forward and
// cross-entropy loss on a seeded random batch) as Graphviz DOT, rendered to SVG when `dot`
// is installed.
#include <fmt/core.h>

#include <algorithm>
#include <filesystem>

#include "analysis/graph_dot.h"
#include "engine/generator.h"
#include "engine/io/fs.h"
#include "engine/ops.h"
#include "models/mlp.h"
#include "tools/command.h"
#include "train/trainer.h"

namespace gl::tools {
namespace {

// Whether two paths name one file: the same path after resolving "." and "..", symbolic links
// and the current directory, or, when both exist, the same file by another name (a hard link).
bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (std::filesystem::equivalent(a, b, ec)) return true;
  const auto ca = std::filesystem::weakly_canonical(a, ec);
  if (ec) return a == b;
  const auto cb = std::filesystem::weakly_canonical(b, ec);
  return ec ? a == b : ca == cb;
}

struct GraphFlags {
  std::string hidden = "16,16";
  int64_t in_features = 784, classes = 10, batch = 4;
  std::string activation = "relu";
  bool batchnorm = false, bn_bias = false;
  double dropout = 0.0;
  uint64_t seed = 0;
  std::string out, svg;
  bool no_svg = false;
};

RegisterCommand reg(
    "graph", "Write the autograd graph of one MLP training step as Graphviz DOT (and SVG)",
    [](CLI::App& sub) {
      auto f = std::make_shared<GraphFlags>();
      sub.add_option("--hidden", f->hidden, "Hidden widths, e.g. 16,16")->capture_default_str();
      sub.add_option("--in-features", f->in_features, "Input features")
          ->transform(integer_in(1, kInt64Max))
          ->capture_default_str();
      sub.add_option("--classes", f->classes, "Output classes")
          ->transform(integer_in(2, kInt64Max))
          ->capture_default_str();
      sub.add_option("--batch-size", f->batch, "Rows of the random batch")
          ->transform(integer_in(1, kInt64Max))
          ->capture_default_str();
      sub.add_option("--activation", f->activation, "Hidden activation")->capture_default_str();
      sub.add_flag("--batchnorm", f->batchnorm, "BatchNorm1d after every hidden Linear");
      sub.add_flag("--bn-bias", f->bn_bias,
                   "With --batchnorm: keep the bias of each Linear before batch norm");
      sub.add_option("--dropout", f->dropout, "Dropout probability")->capture_default_str();
      sub.add_option("--seed", f->seed, "Seed of the weights and the batch")
          ->transform(integer_in(0, std::numeric_limits<uint64_t>::max()))
          ->capture_default_str();
      sub.add_option("--out", f->out, "DOT file to write")->required();
      sub.add_option("--svg", f->svg, "SVG file to render (default: --out with .svg)");
      sub.add_flag("--no-svg", f->no_svg, "Write only the DOT file");
      sub.callback([f]() {
        GL_CHECK(!(f->no_svg && !f->svg.empty()), "--svg {} and --no-svg: give one of them",
                 f->svg);
        // The SVG is rendered from the DOT file: one path for both would overwrite the DOT file
        // with the SVG (--out g.svg without --svg names its SVG g.svg too).
        const std::string svg_path =
            f->svg.empty() ? std::filesystem::path(f->out).replace_extension(".svg").string()
                           : f->svg;
        GL_CHECK(f->no_svg || !same_file(f->out, svg_path),
                 "--out {} and the SVG {} are one file: the SVG would overwrite the DOT file; give "
                 "--svg another path{}",
                 f->out, svg_path, f->svg.empty() ? " (or --no-svg)" : "");
        models::MlpConfig mc;
        mc.in_features = f->in_features;
        mc.hidden = train::parse_int_list(f->hidden, "--hidden");
        mc.activation = parse_activation(f->activation);
        mc.batchnorm = f->batchnorm;
        mc.bias_before_batchnorm = f->bn_bias;
        mc.dropout = f->dropout;
        mc.num_classes = f->classes;
        mc.validate();
        std::string widths = f->hidden;
        std::replace(widths.begin(), widths.end(), ',', '-');
        std::unique_ptr<models::MLP> model;
        try {
          model = models::build_mlp(mc);
        } catch (const Error& e) {  // e.g. widths whose weights do not fit in memory
          throw Error(
              fmt::format("--in-features / --hidden / --classes: the MLP {}-{}-{} cannot "
                          "be built: {}",
                          f->in_features, widths, f->classes, e.what()));
        }
        Generator gen(f->seed);
        model->reset_parameters(gen);
        models::set_dropout_generator(*model, &gen);  // the masks of --dropout
        model->train();
        Tensor x;
        try {
          x = Tensor::randn({f->batch, f->in_features}, gen);
        } catch (const Error& e) {
          throw Error(
              fmt::format("--batch-size {} with --in-features {}: the batch cannot be "
                          "made: {}",
                          f->batch, f->in_features, e.what()));
        }
        std::vector<int64_t> labels;
        for (int64_t i = 0; i < f->batch; ++i) labels.push_back(i % f->classes);
        Tensor y = Tensor::from_vector(labels, {f->batch});
        Tensor loss = cross_entropy(model->forward(x), y);

        analysis::GraphDotOptions o;
        o.names = model->named_parameters();
        o.title = fmt::format("autograd graph of one step: MLP {}-{}-{} ({}), batch {}",
                              f->in_features, widths, f->classes, f->activation, f->batch);
        o.root_name = "cross_entropy loss";
        std::string dot = analysis::autograd_dot(loss, o);
        io::write_file_atomic(f->out, dot);
        fmt::print("wrote {}\n", f->out);
        // The step must also run backward over what was drawn.
        loss.backward();
        if (f->no_svg) return;
        std::string svg = f->svg;
        if (svg.empty()) {
          if (!analysis::graphviz_available()) {
            fmt::print("Graphviz `dot` not found: no SVG written\n");
            return;
          }
          svg = svg_path;
        }
        analysis::render_dot_svg(f->out, svg);
        fmt::print("wrote {}\n", svg);
      });
    });

}  // namespace
}  // namespace gl::tools
