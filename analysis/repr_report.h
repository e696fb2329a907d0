// repr_report.h: the "Representations" part of the HTML report, drawn from RUN_DIR/analysis
// (written by `gradlens analyze` and the `--analyze corr` training callback): layer
// cross-correlation heatmaps and their evolution, PCA and t-SNE scatters, augmentation
// invariance, neuron views. Every file is optional; a malformed one throws naming it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace gl::analysis {

// Appends the section's HTML to `html`, numbering figures on from `figures`. Nothing is
// appended when RUN_DIR/analysis does not exist.
void representation_section(const std::string& run_dir, std::string& html, int& figures);

// A 2-D scatter coloured by class (labels < 0 are grey); used for PCA and t-SNE.
std::string scatter_svg(const std::string& title, const std::vector<double>& x,
                        const std::vector<double>& y, const std::vector<int>& labels,
                        const std::string& xlabel, const std::string& ylabel, int width = 460,
                        int height = 400);

// Which columns of a class-selectivity heatmap to draw when there are more units than `max`.
// `cls` is each unit's preferred class in display order (by class, strongest preference first
// within a class; below 0: no preferred class). Units are taken class by class in turn, each
// class's next-strongest one, so that every class keeps its share of the columns (cutting the
// display order after `max` units would drop the last classes whole); units without a class
// come after the classes in each turn. Returns the chosen positions into `cls`, ascending, so
// the columns keep the display order.
std::vector<size_t> pick_per_class(const std::vector<int64_t>& cls, size_t max);

}  // namespace gl::analysis
