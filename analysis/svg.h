// svg.h: a small plotting library that returns standalone SVG strings: line charts (log-y,
// NaN gaps), bar charts, heatmaps with colour bars, histogram overlays and image grids.
// Every chart marks its plot area with data-* attributes (domain and pixel range) so tests
// and scripts can map drawn coordinates back to data values.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gl::analysis::svg {

// XML/HTML text and attribute escaping (& < > " ').
std::string escape(std::string_view text);

// "Nice" tick values (steps of 1, 2, 2.5 or 5 x 10^k) covering [lo, hi] with about `target`
// ticks; the first tick is <= lo and the last >= hi.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);
// Powers of ten covering [lo, hi] (lo > 0); at least two values.
std::vector<double> log_ticks(double lo, double hi);
// Short label for a tick value, with as many decimals as `step` needs.
std::string format_tick(double value, double step);
// Compact number for labels and tooltips: 3 significant digits, exponent form when tiny/huge.
std::string format_number(double value, int significant = 3);
// What the run and sweep reports show for a value that is missing or not finite: an em dash.
inline constexpr const char* kMissingValue = "—";

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};
std::string hex(Rgb c);
enum class ColorMap { Viridis, Blues, Diverging };
// t in [0, 1] (clamped). Viridis/Blues are sequential; Diverging is blue-white-red.
Rgb colormap(ColorMap map, double t);
// A colour-blind-friendly categorical palette (Okabe-Ito based), cycling.
std::string category_color(int index);

struct Series {
  std::string name;
  std::vector<double> x, y;  // NaN or (log-y) non-positive y leave a gap
  std::string color;         // empty: category_color(index)
  bool dashed = false;
  bool markers = false;
  double width = 1.8;
};

// Whether a line chart draws a y value: finite, and positive on a log axis. A series with no
// drawn point (x finite too) has no legend entry and leaves the axis ranges alone.
bool drawn(double y, bool log_y);
bool has_drawn_point(const Series& s, bool log_y);

struct LineChart {
  std::string title, xlabel, ylabel;
  std::vector<Series> series;
  bool log_y = false;
  bool legend = true;
  int width = 560, height = 330;
  std::optional<double> ymin, ymax;
  // Horizontal reference lines (value, label), drawn dashed grey.
  std::vector<std::pair<double, std::string>> hlines;
  // When set, draws a colour bar for sequentially-coloured series (e.g. epochs) instead of
  // the legend: {label, first value, last value}.
  std::optional<std::tuple<std::string, double, double>> sequential_legend;
  // Said in the middle of a chart with no finite point.
  std::string empty_note = "no data";
};
std::string line_chart(const LineChart& chart);

struct BarGroup {
  std::string name;
  std::vector<double> values;  // one per category
  std::string color;
};
struct BarChart {
  std::string title, xlabel, ylabel;
  std::vector<std::string> categories;
  std::vector<BarGroup> groups;  // one group: plain bars; several: grouped bars with legend
  int width = 560, height = 300;
  std::optional<double> ymin, ymax;
  bool value_labels = false;
};
std::string bar_chart(const BarChart& chart);

struct Heatmap {
  std::string title, xlabel, ylabel;
  std::vector<std::string> row_labels, col_labels;
  std::vector<double> values;  // rows x cols, row-major; NaN cells are drawn blank
  ColorMap map = ColorMap::Viridis;
  bool log_color = false;    // colour by log10(value); non-positive cells blank
  bool cell_labels = false;  // write the value inside each cell
  std::optional<double> vmin, vmax;
  std::string colorbar_label;
  int max_width = 560;  // the chart scales cells to fit
  int cell_size = 0;    // 0: automatic
  // Tooltip (SVG <title>) for cell (row, col); default "row, col: value".
  std::function<std::string(int, int, double)> tooltip;
  std::function<std::string(double)> label_format;  // default format_number
};
std::string heatmap(const Heatmap& map);

struct HistogramOverlay {
  std::string title, xlabel, ylabel = "fraction of units";
  std::vector<double> edges;                     // bins + 1 edges shared by all curves, or
  std::vector<std::vector<double>> curve_edges;  // per-curve edges (overrides `edges`)
  std::vector<std::vector<double>> counts;       // one histogram per curve (e.g. per epoch)
  std::vector<double> curve_values;              // value of each curve for the colour bar
  std::string curve_label = "epoch";
  bool normalize = true;  // draw counts / total
  bool log_y = false;
  int width = 360, height = 230;
};
std::string histogram_overlay(const HistogramOverlay& h);

struct GridImage {
  int height = 0, width = 0, channels = 1;  // pixels are HWC u8
  std::vector<uint8_t> pixels;
  std::string caption;  // drawn under the image
  std::string tooltip;
  bool highlight = false;
};
// Images embedded as PNG data URIs, `columns` per row, each scaled by `scale`.
std::string image_grid(const std::vector<GridImage>& images, int columns, int scale = 2);

}  // namespace gl::analysis::svg
