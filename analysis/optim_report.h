// optim_report.h: the "Optimization dynamics" part of the HTML report, drawn from
// <run>/optim/ (written by OptimStatsCallback): zero-gradient counts, released fraction,
// sign-flip fraction and weight-difference norm over epochs, and the gradient sign map with
// a zoomed, full-resolution part.
#pragma once
#include <string>

namespace gl::analysis {

// HTML for the section, or "" when the run has no optim/optim.json. `figures` is the page's
// running figure number (incremented per figure). Throws naming the file on malformed input.
std::string optim_section_html(const std::string& run_dir, int& figures);

}  // namespace gl::analysis
