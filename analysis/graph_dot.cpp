// graph_dot.cpp: walks Node::inputs from the root breadth first (each Node and leaf once) and
// prints DOT; rendering shells out to Graphviz.
#include "analysis/graph_dot.h"

// GCC 12 reports impossible overlaps in inlined std::string concatenation (a known false
// positive of -Wrestrict at -O3).
#pragma GCC diagnostic ignored "-Wrestrict"

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>

#include "engine/autograd.h"
#include "engine/io/fs.h"

namespace gl::analysis {
namespace {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string tensor_str(const Tensor& t) {
  return std::string(dtype_name(t.dtype())) + shape_str(t.shape());
}

// DOT string literal escaping.
std::string q(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::string autograd_dot(const Tensor& root, const GraphDotOptions& o) {
  GL_CHECK(root.defined(), "autograd_dot: the root tensor is undefined");
  GL_CHECK(root.grad_fn() != nullptr,
           "autograd_dot: {} '{}' has no autograd history (computed without grad, or a leaf)",
           tensor_str(root), o.root_name);
  std::map<const TensorImpl*, std::string> names;
  for (auto& [n, t] : o.names)
    if (t.defined()) names[t.impl()] = n;

  std::string dot = "digraph autograd {\n";
  dot += "  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=12, nodesep=0.35, ranksep=0.4";
  if (!o.title.empty()) dot += ", label=" + q(o.title) + ", labelloc=t";
  dot +=
      "];\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", "
      "fontsize=9, color=\"#444444\"];\n";

  std::map<const Node*, std::string> op_ids;
  std::map<const TensorImpl*, std::string> leaf_ids;
  std::deque<std::pair<const Node*, Tensor>> todo;  // node and the tensor it produced
  auto op_id = [&](const Tensor& t) {
    const Node* n = t.grad_fn().get();
    auto it = op_ids.find(n);
    if (it != op_ids.end()) return it->second;
    std::string id = fmt::format("op{}", op_ids.size());
    op_ids[n] = id;
    todo.emplace_back(n, t);
    return id;
  };

  std::string root_id = "root";
  dot += "  root [shape=doubleoctagon, style=filled, fillcolor=\"#f6d8ae\", label=" +
         q(o.root_name + "\n" + tensor_str(root)) + "];\n";
  dot += "  " + op_id(root) + " -> root [label=" + q(shape_str(root.shape())) + "];\n";
  while (!todo.empty()) {
    auto [node, out] = todo.front();
    todo.pop_front();
    const std::string id = op_ids[node];
    std::string label = node->name + "\nout " + tensor_str(out);
    if (!node->saved_shapes.empty()) {
      label += "\nsaved";
      for (auto& s : node->saved_shapes) {
        label += ' ';
        label += shape_str(s);
      }
    }
    dot += "  " + id +
           " [shape=box, style=\"rounded,filled\", fillcolor=\"#dbe8f7\", label=" + q(label) +
           "];\n";
    for (size_t k = 0; k < node->inputs.size(); ++k) {
      const Tensor& in = node->inputs[k];
      if (!in.defined()) continue;
      std::string src;
      if (in.grad_fn()) {
        src = op_id(in);
      } else {
        auto it = leaf_ids.find(in.impl());
        if (it == leaf_ids.end()) {
          src = fmt::format("leaf{}", leaf_ids.size());
          leaf_ids[in.impl()] = src;
          auto nm = names.find(in.impl());
          std::string lname =
              nm != names.end() ? nm->second : (in.requires_grad() ? "leaf" : "input");
          bool g = in.requires_grad();
          dot +=
              "  " + src + " [shape=ellipse, style=filled, fillcolor=" +
              (g ? std::string("\"#c9ebc4\"") : std::string("\"#eeeeee\", fontcolor=\"#555555\"")) +
              ", label=" + q(lname + "\n" + tensor_str(in) + (g ? "\nrequires grad" : "")) + "];\n";
        } else {
          src = it->second;
        }
      }
      bool needs = in.requires_grad() || in.grad_fn() != nullptr;
      dot += "  " + src + " -> " + id + " [label=" + q(shape_str(in.shape())) +
             (needs ? std::string("") : std::string(", style=dashed, color=\"#999999\"")) + "];\n";
    }
  }
  dot += "}\n";
  return dot;
}

bool graphviz_available() {
  return std::system("command -v dot >/dev/null 2>&1") == 0;
}

void render_dot_svg(const std::string& dot_path, const std::string& svg_path) {
  const std::filesystem::path dir = std::filesystem::path(svg_path).parent_path();
  GL_CHECK(dir.empty() || std::filesystem::is_directory(dir),
           "graph: cannot write '{}': no directory '{}'", svg_path, dir.string());
  GL_CHECK(!std::filesystem::is_directory(svg_path),
           "graph: cannot write '{}': it is a directory (give a file name for the SVG)", svg_path);
  GL_CHECK(graphviz_available(), "graph: Graphviz `dot` is not on PATH; cannot render '{}'",
           svg_path);
  // dot writes into a private temporary directory; the SVG is then put in place atomically,
  // like every file gradlens writes, so a failed or killed render leaves nothing beside it.
  std::string tmpl = (std::filesystem::temp_directory_path() / "gradlens_dot_XXXXXX").string();
  GL_CHECK(::mkdtemp(tmpl.data()) != nullptr, "graph: cannot create a temporary directory in {}",
           std::filesystem::temp_directory_path().string());
  const std::string work = tmpl, tmp = work + "/graph.svg", err = work + "/dot.err";
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{work};
  std::string cmd =
      "dot -Tsvg " + shell_quote(dot_path) + " -o " + shell_quote(tmp) + " 2>" + shell_quote(err);
  int rc = std::system(cmd.c_str());
  std::string msg;
  if (io::file_exists(err)) {
    auto b = io::read_file(err);
    msg.assign(b.begin(), b.end());
    // dot's messages on one line, as every error is.
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
    for (char& c : msg)
      if (c == '\n' || c == '\r') c = ' ';
  }
  if (rc != 0)
    throw Error(fmt::format("graph: `dot -Tsvg {}` failed (status {}): {}", dot_path, rc, msg));
  io::write_file_atomic(svg_path, io::read_file(tmp));
}

}  // namespace gl::analysis
