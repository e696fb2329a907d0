// svg.cpp: chart layout and drawing. Charts use a fixed viewBox and scale with the page, so
// font sizes below are in viewBox units; all text goes through escape().
#include "analysis/svg.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>

#include "analysis/png.h"

namespace gl::analysis::svg {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const char* kFont = "font-family=\"inherit\"";
const char* kAxisColor = "#555";
const char* kGridColor = "#e6e6e6";

std::string num(double v) {  // a pixel coordinate
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s(buf);
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  if (s == "-0") s = "0";
  return s;
}

std::string full(double v) {  // a data value in an attribute, exact enough to invert
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

struct Box {
  double left, top, width, height;
  double right() const { return left + width; }
  double bottom() const { return top + height; }
};

std::string open_svg(int w, int h, const std::string& label, const std::string& cls) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"" + cls + "\" viewBox=\"0 0 " +
         std::to_string(w) + " " + std::to_string(h) + "\" width=\"" + std::to_string(w) +
         "\" height=\"" + std::to_string(h) + "\" role=\"img\" aria-label=\"" + escape(label) +
         "\" " + kFont + ">";
}

std::string text(double x, double y, const std::string& s, const std::string& anchor = "middle",
                 double size = 11, const std::string& extra = "") {
  return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" text-anchor=\"" + anchor +
         "\" font-size=\"" + num(size) + "\"" + (extra.empty() ? "" : " " + extra) + ">" +
         escape(s) + "</text>";
}

std::string title_text(int width, const std::string& title) {
  if (title.empty()) return "";
  return text(width / 2.0, 17, title, "middle", 13, "font-weight=\"600\" fill=\"#222\"");
}

// Ticks for an x axis spanning exactly [lo, hi]; integer data gets integer ticks only.
std::vector<double> inner_ticks(double lo, double hi, bool integers, int target) {
  std::vector<double> out;
  for (double t : nice_ticks(lo, hi, target)) {
    if (t < lo - 1e-9 * std::max(1.0, std::fabs(lo)) ||
        t > hi + 1e-9 * std::max(1.0, std::fabs(hi)))
      continue;
    if (integers && std::fabs(t - std::round(t)) > 1e-9) continue;
    out.push_back(t);
  }
  return out;
}

double luminance(Rgb c) {
  return (0.299 * c.r + 0.587 * c.g + 0.114 * c.b) / 255.0;
}

Rgb lerp_table(const std::vector<Rgb>& table, double t) {
  if (!(t >= 0)) t = 0;  // NaN too
  if (t > 1) t = 1;
  double pos = t * (table.size() - 1);
  size_t i = std::min(static_cast<size_t>(pos), table.size() - 2);
  double f = pos - i;
  auto mix = [f](uint8_t a, uint8_t b) {
    return static_cast<uint8_t>(std::lround(a + (static_cast<double>(b) - a) * f));
  };
  return {mix(table[i].r, table[i + 1].r), mix(table[i].g, table[i + 1].g),
          mix(table[i].b, table[i + 1].b)};
}

Rgb parse_hex(const char* h) {
  auto v = std::strtoul(h + 1, nullptr, 16);
  return {static_cast<uint8_t>(v >> 16), static_cast<uint8_t>((v >> 8) & 255),
          static_cast<uint8_t>(v & 255)};
}

std::vector<Rgb> table_of(std::initializer_list<const char*> hexes) {
  std::vector<Rgb> t;
  for (auto h : hexes) t.push_back(parse_hex(h));
  return t;
}

// Vertical colour bar made of stacked rects (no gradient ids, so many charts can share a page).
std::string color_bar(double x, double y, double h, ColorMap map, double lo, double hi, bool log,
                      const std::string& label, double t_max = 1.0) {
  std::string s = "<g class=\"colorbar\">";
  const int steps = 48;
  for (int i = 0; i < steps; ++i) {
    double t = (i + 0.5) / steps;
    double yy = y + h - (i + 1) * h / steps;
    s += "<rect x=\"" + num(x) + "\" y=\"" + num(yy) + "\" width=\"12\" height=\"" +
         num(h / steps + 0.6) + "\" fill=\"" + hex(colormap(map, t * t_max)) + "\"/>";
  }
  s += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"12\" height=\"" + num(h) +
       "\" fill=\"none\" stroke=\"#999\" stroke-width=\"0.5\"/>";
  std::vector<double> ticks;
  if (log) {
    for (double t : log_ticks(std::pow(10.0, lo), std::pow(10.0, hi))) {
      double lt = std::log10(t);
      if (lt >= lo - 1e-9 && lt <= hi + 1e-9) ticks.push_back(lt);
    }
  } else {
    ticks = inner_ticks(lo, hi, false, 5);
  }
  double step = ticks.size() > 1 ? ticks[1] - ticks[0] : std::fabs(hi - lo);
  for (double t : ticks) {
    double yy = hi > lo ? y + h - (t - lo) / (hi - lo) * h : y + h / 2;
    s += "<line x1=\"" + num(x + 12) + "\" x2=\"" + num(x + 15) + "\" y1=\"" + num(yy) +
         "\" y2=\"" + num(yy) + "\" stroke=\"#777\"/>";
    std::string lab = log ? format_number(std::pow(10.0, t)) : format_tick(t, step);
    s += text(x + 17, yy + 3.5, lab, "start", 9.5, "fill=\"#444\"");
  }
  if (!label.empty())
    s += "<text transform=\"translate(" + num(x + 6) + "," + num(y - 6) +
         ")\" text-anchor=\"middle\" font-size=\"9.5\" fill=\"#444\">" + escape(label) + "</text>";
  return s + "</g>";
}

}  // namespace

std::string escape(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {0, 1};
  if (lo > hi) std::swap(lo, hi);
  if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) {
    double pad = lo == 0 ? 1.0 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  target = std::max(target, 2);
  double rough = (hi - lo) / target;
  double mag = std::pow(10.0, std::floor(std::log10(rough)));
  double norm = rough / mag;
  double step = (norm < 1.5 ? 1 : norm < 2.25 ? 2 : norm < 3.5 ? 2.5 : norm < 7.5 ? 5 : 10) * mag;
  double first = std::floor(lo / step + 1e-9) * step;
  double last = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> ticks;
  for (int i = 0;; ++i) {
    double t = first + i * step;
    if (t > last + step * 1e-6) break;
    if (std::fabs(t) < step * 1e-9) t = 0;
    ticks.push_back(t);
  }
  return ticks;
}

std::vector<double> log_ticks(double lo, double hi) {
  if (!(lo > 0) || !(hi > 0)) return {1, 10};
  if (lo > hi) std::swap(lo, hi);
  int a = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  int b = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  if (b <= a) b = a + 1;
  int stride = std::max(1, (b - a + 7) / 8);  // at most ~8 labelled decades
  std::vector<double> out;
  for (int e = a; e <= b; e += stride) out.push_back(std::pow(10.0, e));
  if (out.size() < 2) out.push_back(std::pow(10.0, a + stride));
  if (b - a <= 2) {  // few decades: 1-2-5 ticks, trimmed to the data with one step of margin
    std::vector<double> fine;
    for (int e = a; e <= b; ++e)
      for (double m : {1.0, 2.0, 5.0})
        if (m * std::pow(10.0, e) <= std::pow(10.0, b) * 1.000001)
          fine.push_back(m * std::pow(10.0, e));
    size_t first = 0, last = fine.size() - 1;
    while (first + 1 < fine.size() && fine[first + 1] <= lo * 1.000001) ++first;
    while (last > first + 1 && fine[last - 1] >= hi / 1.000001) --last;
    return std::vector<double>(fine.begin() + first, fine.begin() + last + 1);
  }
  return out;
}

std::string format_tick(double v, double step) {
  if (v == 0) return "0";
  double av = std::fabs(v);
  if (av >= 1e5 || (av < 1e-3 && av > 0)) return format_number(v);
  // The fewest decimals that write both the step and this tick exactly: 2.5 with step 2.5, 7.5
  // with step 5 (ticks need not sit on multiples of the step) keep their .5.
  auto whole_at = [](double x, int d) {
    const double scaled = std::fabs(x) * std::pow(10.0, d);
    return std::fabs(scaled - std::round(scaled)) <= 1e-6 * std::max(1.0, scaled);
  };
  int decimals = step > 0 && step < 1 ? static_cast<int>(std::ceil(-std::log10(step) - 1e-9)) : 0;
  while (decimals < 10 && !((step <= 0 || whole_at(step, decimals)) && whole_at(v, decimals)))
    ++decimals;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*f", std::min(decimals, 10), v);
  return buf;
}

std::string format_number(double v, int significant) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return "0";
  double av = std::fabs(v);
  char buf[48];
  if (av >= 1e5 || av < 1e-3) {
    std::snprintf(buf, sizeof buf, "%.*e", std::max(0, significant - 1), v);
    // 1.00e-05 -> 1e-5
    std::string s(buf);
    auto e = s.find('e');
    std::string mant = s.substr(0, e), ex = s.substr(e + 1);
    if (mant.find('.') != std::string::npos) {
      while (mant.back() == '0') mant.pop_back();
      if (mant.back() == '.') mant.pop_back();
    }
    int exv = std::stoi(ex);
    return mant + "e" + std::to_string(exv);
  }
  int digits = static_cast<int>(std::floor(std::log10(av))) + 1;
  int decimals = std::max(0, significant - digits);
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s(buf);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s;
}

std::string hex(Rgb c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c.r, c.g, c.b);
  return buf;
}

Rgb colormap(ColorMap map, double t) {
  // Samples of matplotlib's viridis at t = 0, 0.1, ..., 1 and ColorBrewer Blues / RdBu.
  static const auto viridis =
      table_of({"#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c", "#22a884",
                "#44bf70", "#7ad151", "#bddf26", "#fde725"});
  static const auto blues = table_of({"#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6",
                                      "#4292c6", "#2171b5", "#08519c", "#08306b"});
  static const auto diverging = table_of({"#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
                                          "#fddbc7", "#f4a582", "#d6604d", "#b2182b"});
  switch (map) {
    case ColorMap::Blues:
      return lerp_table(blues, t);
    case ColorMap::Diverging:
      return lerp_table(diverging, t);
    default:
      return lerp_table(viridis, t);
  }
}

std::string category_color(int index) {
  static const std::array<const char*, 10> palette = {"#0072b2", "#d55e00", "#009e73", "#cc79a7",
                                                      "#e69f00", "#56b4e9", "#882255", "#117733",
                                                      "#999933", "#444444"};
  return palette[static_cast<size_t>(index) % palette.size()];
}

bool drawn(double y, bool log_y) {
  return std::isfinite(y) && (!log_y || y > 0);
}

bool has_drawn_point(const Series& s, bool log_y) {
  for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
    if (std::isfinite(s.x[i]) && drawn(s.y[i], log_y)) return true;
  return false;
}

std::string line_chart(const LineChart& c) {
  const bool seq = c.sequential_legend.has_value();
  std::vector<size_t> entries;  // the series in the legend: those with a point drawn
  for (size_t k = 0; k < c.series.size(); ++k)
    if (has_drawn_point(c.series[k], c.log_y)) entries.push_back(k);
  const bool legend = c.legend && !entries.empty() && !seq;
  double legend_w = 0;
  if (legend) {
    size_t longest = 0;
    for (size_t k : entries) longest = std::max(longest, c.series[k].name.size());
    legend_w = std::min(160.0, 34 + 6.2 * longest);
  }
  if (seq) legend_w = 58;
  Box plot{58, c.title.empty() ? 14.0 : 30.0, 0, 0};
  plot.width = c.width - plot.left - 14 - legend_w;
  plot.height = c.height - plot.top - (c.xlabel.empty() ? 30 : 44);

  // Data extents, skipping gaps.
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  bool x_integers = true;
  for (auto& s : c.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      double x = s.x[i], y = s.y[i];
      if (!std::isfinite(x) || !drawn(y, c.log_y)) continue;
      xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      ymin = std::min(ymin, y), ymax = std::max(ymax, y);
      if (std::fabs(x - std::round(x)) > 1e-9) x_integers = false;
    }
  }
  for (auto& h : c.hlines)
    if (!c.log_y || h.first > 0) ymin = std::min(ymin, h.first), ymax = std::max(ymax, h.first);
  if (c.ymin) ymin = *c.ymin;
  if (c.ymax) ymax = *c.ymax;
  const bool empty = !(xmin <= xmax);
  if (empty) xmin = 0, xmax = 1, ymin = c.log_y ? 0.1 : 0, ymax = 1;
  if (xmax == xmin) xmin -= 0.5, xmax += 0.5;  // one integer x (a single layer): one tick

  std::vector<double> yt;
  double y0, y1;  // domain, in log10 units when log_y
  if (c.log_y) {
    yt = log_ticks(ymin, ymax);
    y0 = std::log10(yt.front());
    y1 = std::log10(yt.back());
  } else {
    yt = nice_ticks(ymin, ymax, 5);
    y0 = c.ymin ? *c.ymin : yt.front();
    y1 = c.ymax ? *c.ymax : yt.back();
    std::erase_if(yt, [&](double t) { return t < y0 - 1e-12 || t > y1 + 1e-12; });
  }
  auto px = [&](double x) { return plot.left + (x - xmin) / (xmax - xmin) * plot.width; };
  auto py = [&](double y) {
    double v = c.log_y ? std::log10(y) : y;
    return plot.bottom() - (v - y0) / (y1 - y0) * plot.height;
  };

  std::string s =
      open_svg(c.width, c.height, c.title.empty() ? c.ylabel : c.title, "chart line-chart");
  s += title_text(c.width, c.title);
  // Grid and y ticks.
  double ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;
  for (double t : yt) {
    double yy = py(t);
    s += "<line x1=\"" + num(plot.left) + "\" x2=\"" + num(plot.right()) + "\" y1=\"" + num(yy) +
         "\" y2=\"" + num(yy) + "\" stroke=\"" + kGridColor + "\"/>";
    s += text(plot.left - 6, yy + 3.5, c.log_y ? format_number(t) : format_tick(t, ystep), "end",
              10, "fill=\"#444\" class=\"ytick\"");
  }
  auto xt = inner_ticks(xmin, xmax, x_integers, std::max(3, static_cast<int>(plot.width / 70)));
  double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1;
  for (double t : xt) {
    double xx = px(t);
    s += "<line x1=\"" + num(xx) + "\" x2=\"" + num(xx) + "\" y1=\"" + num(plot.bottom()) +
         "\" y2=\"" + num(plot.bottom() + 4) + "\" stroke=\"" + kAxisColor + "\"/>";
    s += text(xx, plot.bottom() + 15, format_tick(t, xstep), "middle", 10,
              "fill=\"#444\" class=\"xtick\"");
  }
  // Axes.
  s += "<path d=\"M" + num(plot.left) + "," + num(plot.top) + "V" + num(plot.bottom()) + "H" +
       num(plot.right()) + "\" fill=\"none\" stroke=\"" + kAxisColor + "\"/>";
  if (!c.xlabel.empty())
    s += text(plot.left + plot.width / 2, c.height - 8, c.xlabel, "middle", 11, "fill=\"#333\"");
  if (!c.ylabel.empty())
    s += "<text transform=\"translate(13," + num(plot.top + plot.height / 2) +
         ") rotate(-90)\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">" +
         escape(c.ylabel) + "</text>";
  if (empty)
    s += text(plot.left + plot.width / 2, plot.top + plot.height / 2, c.empty_note, "middle", 12,
              "fill=\"#999\"");

  // Plot area: data-* attributes let a reader invert pixel coordinates.
  s += "<g class=\"plot\" data-xdomain=\"" + full(xmin) + " " + full(xmax) + "\" data-ydomain=\"" +
       full(c.log_y ? std::pow(10.0, y0) : y0) + " " + full(c.log_y ? std::pow(10.0, y1) : y1) +
       "\" data-xrange=\"" + num(plot.left) + " " + num(plot.right()) + "\" data-yrange=\"" +
       num(plot.bottom()) + " " + num(plot.top) + "\" data-logy=\"" + (c.log_y ? "1" : "0") + "\">";
  for (auto& h : c.hlines) {
    if (c.log_y && h.first <= 0) continue;
    double yy = py(h.first);
    s += "<line x1=\"" + num(plot.left) + "\" x2=\"" + num(plot.right()) + "\" y1=\"" + num(yy) +
         "\" y2=\"" + num(yy) + "\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>";
    s += text(plot.right() - 3, yy - 3, h.second, "end", 9.5, "fill=\"#666\"");
  }
  for (size_t k = 0; k < c.series.size(); ++k) {
    const Series& ser = c.series[k];
    std::string color = ser.color.empty() ? category_color(static_cast<int>(k)) : ser.color;
    std::string style = "fill=\"none\" stroke=\"" + color + "\" stroke-width=\"" + num(ser.width) +
                        "\" stroke-linejoin=\"round\"" +
                        (ser.dashed ? " stroke-dasharray=\"5 3\"" : "");
    std::string pts;
    int npts = 0;
    auto flush = [&] {
      if (npts == 1) {  // an isolated point still shows
        s += "<circle class=\"series-point\" data-series=\"" + escape(ser.name) + "\" cx=\"" +
             pts.substr(0, pts.find(',')) + "\" cy=\"" + pts.substr(pts.find(',') + 1) +
             "\" r=\"2\" fill=\"" + color + "\"/>";
      } else if (npts > 1) {
        s += "<polyline class=\"series\" data-series=\"" + escape(ser.name) + "\" points=\"" + pts +
             "\" " + style + "/>";
      }
      pts.clear();
      npts = 0;
    };
    for (size_t i = 0; i < ser.x.size() && i < ser.y.size(); ++i) {
      double x = ser.x[i], y = ser.y[i];
      if (!std::isfinite(x) || !drawn(y, c.log_y)) {
        flush();
        continue;
      }
      if (npts) pts += ' ';
      pts += num(px(x)) + "," + num(py(y));
      ++npts;
    }
    flush();
    if (ser.markers)
      for (size_t i = 0; i < ser.x.size() && i < ser.y.size(); ++i)
        if (std::isfinite(ser.x[i]) && drawn(ser.y[i], c.log_y))
          s += "<circle cx=\"" + num(px(ser.x[i])) + "\" cy=\"" + num(py(ser.y[i])) +
               "\" r=\"2.2\" fill=\"" + color + "\"><title>" + escape(ser.name) + ": " +
               escape(format_number(ser.x[i], 4)) + ", " + escape(format_number(ser.y[i], 4)) +
               "</title></circle>";
  }
  s += "</g>";

  if (legend) {
    double lx = plot.right() + 12, ly = plot.top + 4;
    size_t max_rows = static_cast<size_t>(plot.height / 15);
    for (size_t row = 0; row < entries.size() && row < max_rows; ++row) {
      const size_t k = entries[row];
      const Series& ser = c.series[k];
      std::string color = ser.color.empty() ? category_color(static_cast<int>(k)) : ser.color;
      double yy = ly + row * 15;
      s += "<line x1=\"" + num(lx) + "\" x2=\"" + num(lx + 20) + "\" y1=\"" + num(yy) + "\" y2=\"" +
           num(yy) + "\" stroke=\"" + color + "\" stroke-width=\"2.2\"" +
           (ser.dashed ? " stroke-dasharray=\"5 3\"" : "") + "/>";
      // A long name loses its middle, not its end: "he_normal:factor=1 (epoch 1)" and "(epoch
      // 5)" stay apart. The whole name is the entry's tooltip.
      std::string name = ser.name;
      if (name.size() > 22) {  // cut on UTF-8 character boundaries
        auto boundary = [&](std::size_t i) {
          while (i > 0 && i < name.size() && (static_cast<unsigned char>(name[i]) & 0xC0) == 0x80)
            --i;
          return i;
        };
        const std::size_t head = boundary(12), tail = boundary(name.size() - 9);
        name = name.substr(0, head) + "…" + name.substr(tail);
      }
      s += "<g><title>" + escape(ser.name) + "</title>" +
           text(lx + 25, yy + 3.5, name, "start", 10, "class=\"legend\" fill=\"#333\"") + "</g>";
    }
    if (entries.size() > max_rows)
      s += text(lx, ly + max_rows * 15 + 3,
                "+" + std::to_string(entries.size() - max_rows) + " more", "start", 9.5,
                "fill=\"#777\"");
  }
  if (seq) {
    auto& [label, lo, hi] = *c.sequential_legend;
    s += color_bar(plot.right() + 14, plot.top + 14, std::min(plot.height - 14, 140.0),
                   ColorMap::Viridis, lo, hi, false, label, 0.9);
  }
  return s + "</svg>";
}

std::string bar_chart(const BarChart& c) {
  const bool legend = c.groups.size() > 1;
  Box plot{58, c.title.empty() ? 14.0 : 30.0, 0, 0};
  plot.width = c.width - plot.left - 14 - (legend ? 110 : 0);
  plot.height = c.height - plot.top - (c.xlabel.empty() ? 30 : 44);
  double lo = 0, hi = -INFINITY;
  for (auto& g : c.groups)
    for (double v : g.values)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!(hi > lo)) hi = lo + 1;
  auto yt = nice_ticks(c.ymin.value_or(lo), c.ymax.value_or(hi), 5);
  double y0 = c.ymin.value_or(yt.front()), y1 = c.ymax.value_or(yt.back());
  std::erase_if(yt, [&](double t) { return t < y0 - 1e-12 || t > y1 + 1e-12; });
  auto py = [&](double v) { return plot.bottom() - (v - y0) / (y1 - y0) * plot.height; };
  std::string s = open_svg(c.width, c.height, c.title, "chart bar-chart");
  s += title_text(c.width, c.title);
  double ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;
  for (double t : yt) {
    s += "<line x1=\"" + num(plot.left) + "\" x2=\"" + num(plot.right()) + "\" y1=\"" + num(py(t)) +
         "\" y2=\"" + num(py(t)) + "\" stroke=\"" + kGridColor + "\"/>";
    s += text(plot.left - 6, py(t) + 3.5, format_tick(t, ystep), "end", 10, "fill=\"#444\"");
  }
  const size_t n = c.categories.size(), g = std::max<size_t>(1, c.groups.size());
  const double slot = n ? plot.width / n : plot.width;
  const double bar_w = slot * 0.8 / g;
  const size_t label_every =
      std::max<size_t>(1, static_cast<size_t>(std::ceil(n * 22.0 / plot.width)));
  s += "<g class=\"plot\" data-ydomain=\"" + full(y0) + " " + full(y1) + "\" data-yrange=\"" +
       num(plot.bottom()) + " " + num(plot.top) + "\">";
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < c.groups.size(); ++k) {
      const auto& grp = c.groups[k];
      if (i >= grp.values.size() || !std::isfinite(grp.values[i])) continue;
      double v = grp.values[i];
      double x = plot.left + slot * i + slot * 0.1 + bar_w * k;
      double top = py(std::min(std::max(v, 0.0), y1)), base = py(std::max(std::min(v, 0.0), y0));
      std::string color = grp.color.empty() ? category_color(static_cast<int>(k)) : grp.color;
      s += "<rect class=\"bar\" data-value=\"" + full(v) + "\" x=\"" + num(x) + "\" y=\"" +
           num(top) + "\" width=\"" + num(std::max(bar_w - 1, 0.5)) + "\" height=\"" +
           num(std::max(base - top, 0.0)) + "\" fill=\"" + color + "\"><title>" +
           escape(c.categories[i]) + (c.groups.size() > 1 ? " (" + escape(grp.name) + ")" : "") +
           ": " + escape(format_number(v, 4)) + "</title></rect>";
      if (c.value_labels && g == 1)
        s +=
            text(x + bar_w / 2 - 0.5, top - 3, format_number(v, 3), "middle", 8.5, "fill=\"#444\"");
    }
  }
  s += "</g>";
  for (size_t i = 0; i < n; i += label_every)
    s += text(plot.left + slot * (i + 0.5), plot.bottom() + 14, c.categories[i], "middle", 10,
              "fill=\"#444\"");
  s += "<path d=\"M" + num(plot.left) + "," + num(plot.top) + "V" + num(py(std::max(y0, 0.0))) +
       "H" + num(plot.right()) + "\" fill=\"none\" stroke=\"" + kAxisColor + "\"/>";
  if (!c.xlabel.empty())
    s += text(plot.left + plot.width / 2, c.height - 8, c.xlabel, "middle", 11, "fill=\"#333\"");
  if (!c.ylabel.empty())
    s += "<text transform=\"translate(13," + num(plot.top + plot.height / 2) +
         ") rotate(-90)\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">" +
         escape(c.ylabel) + "</text>";
  if (legend)
    for (size_t k = 0; k < c.groups.size(); ++k) {
      double yy = plot.top + 6 + k * 15;
      std::string color =
          c.groups[k].color.empty() ? category_color(static_cast<int>(k)) : c.groups[k].color;
      s += "<rect x=\"" + num(plot.right() + 12) + "\" y=\"" + num(yy - 5) +
           "\" width=\"10\" height=\"10\" fill=\"" + color + "\"/>";
      s += text(plot.right() + 27, yy + 3.5, c.groups[k].name, "start", 10, "fill=\"#333\"");
    }
  return s + "</svg>";
}

std::string heatmap(const Heatmap& h) {
  const int rows = static_cast<int>(h.row_labels.size()),
            cols = static_cast<int>(h.col_labels.size());
  size_t longest = 0;
  for (auto& l : h.row_labels) longest = std::max(longest, l.size());
  const double left = 22 + std::min<size_t>(longest, 14) * 6.2 + (h.ylabel.empty() ? 0 : 14);
  const double top = h.title.empty() ? 10 : 28;
  const double right = 64;
  double cw, ch;
  if (h.cell_size > 0) {
    cw = ch = h.cell_size;
  } else {
    cw = std::clamp((h.max_width - left - right) / std::max(cols, 1), 1.0, 46.0);
    ch = std::clamp(cw, std::min(cw, 4.0), std::max(4.0, 420.0 / std::max(rows, 1)));
    ch = std::min(ch, 46.0);
  }
  const Box plot{left, top, cw * cols, ch * rows};
  const int width = static_cast<int>(std::ceil(plot.right() + right));
  const int height = static_cast<int>(std::ceil(plot.bottom() + (h.xlabel.empty() ? 26 : 40)));

  auto transform = [&](double v) {
    if (h.log_color) return v > 0 ? std::log10(v) : NAN;
    return v;
  };
  double lo = INFINITY, hi = -INFINITY;
  for (double v : h.values) {
    double t = transform(v);
    if (std::isfinite(t)) lo = std::min(lo, t), hi = std::max(hi, t);
  }
  if (h.vmin) lo = transform(*h.vmin);
  if (h.vmax) hi = transform(*h.vmax);
  if (!(lo <= hi)) lo = 0, hi = 1;
  if (h.map == ColorMap::Diverging && !h.vmin && !h.vmax && !h.log_color) {
    double m = std::max(std::fabs(lo), std::fabs(hi));
    lo = -m, hi = m;
  }
  if (hi == lo) hi = lo + 1;

  std::string s = open_svg(width, height, h.title, "chart heatmap");
  s += title_text(width, h.title);
  s += "<g class=\"cells\">";
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      size_t idx = static_cast<size_t>(r) * cols + c;
      double v = idx < h.values.size() ? h.values[idx] : NAN;
      double t = transform(v);
      double x = plot.left + c * cw, y = plot.top + r * ch;
      if (!std::isfinite(t)) {
        // A blank cell still says what it is (its tooltip: "diverged", "no data"...).
        s += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(cw) + "\" height=\"" +
             num(ch) + "\" fill=\"#f4f4f4\">" +
             (h.tooltip ? "<title>" + escape(h.tooltip(r, c, v)) + "</title>" : std::string()) +
             "</rect>";
        continue;
      }
      Rgb color = colormap(h.map, (t - lo) / (hi - lo));
      std::string tip = h.tooltip
                            ? h.tooltip(r, c, v)
                            : h.row_labels[r] + ", " + h.col_labels[c] + ": " + format_number(v, 4);
      s += "<rect class=\"cell\" data-row=\"" + std::to_string(r) + "\" data-col=\"" +
           std::to_string(c) + "\" data-value=\"" + full(v) + "\" x=\"" + num(x) + "\" y=\"" +
           num(y) + "\" width=\"" + num(cw + 0.3) + "\" height=\"" + num(ch + 0.3) + "\" fill=\"" +
           hex(color) + "\"><title>" + escape(tip) + "</title></rect>";
      if (h.cell_labels && cw >= 16 && ch >= 12) {
        std::string lab = h.label_format ? h.label_format(v) : format_number(v, 3);
        s += text(x + cw / 2, y + ch / 2 + 3.8, lab, "middle", std::min(11.0, cw / 3.2),
                  std::string("class=\"cell-label\" pointer-events=\"none\" fill=\"") +
                      (luminance(color) < 0.55 ? "#fff" : "#222") + "\"");
      }
    }
  }
  s += "</g>";
  s += "<rect x=\"" + num(plot.left) + "\" y=\"" + num(plot.top) + "\" width=\"" + num(plot.width) +
       "\" height=\"" + num(plot.height) +
       "\" fill=\"none\" stroke=\"#bbb\" stroke-width=\"0.6\"/>";
  const int row_every = std::max(1, static_cast<int>(std::ceil(11.0 / ch)));
  for (int r = 0; r < rows; r += row_every)
    s += text(plot.left - 4, plot.top + (r + 0.5) * ch + 3.5,
              h.row_labels[r].size() > 14 ? h.row_labels[r].substr(0, 13) + "…" : h.row_labels[r],
              "end", std::min(10.0, std::max(ch, 8.0)), "fill=\"#444\"");
  size_t col_longest = 1;
  for (auto& l : h.col_labels) col_longest = std::max(col_longest, l.size());
  const int col_every = std::max(1, static_cast<int>(std::ceil((col_longest * 6.0 + 4) / cw)));
  for (int c = 0; c < cols; c += col_every)
    s += text(plot.left + (c + 0.5) * cw, plot.bottom() + 13, h.col_labels[c], "middle", 10,
              "fill=\"#444\"");
  if (!h.xlabel.empty())
    s += text(plot.left + plot.width / 2, height - 7, h.xlabel, "middle", 11, "fill=\"#333\"");
  if (!h.ylabel.empty())
    s += "<text transform=\"translate(12," + num(plot.top + plot.height / 2) +
         ") rotate(-90)\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">" +
         escape(h.ylabel) + "</text>";
  s += color_bar(plot.right() + 10, plot.top + 12, std::max(40.0, plot.height - 12), h.map, lo, hi,
                 h.log_color, h.colorbar_label);
  return s + "</svg>";
}

std::string histogram_overlay(const HistogramOverlay& h) {
  LineChart c;
  c.title = h.title;
  c.xlabel = h.xlabel;
  c.ylabel = h.ylabel;
  c.width = h.width;
  c.height = h.height;
  c.log_y = h.log_y;
  const size_t n = h.counts.size();
  for (size_t k = 0; k < n; ++k) {
    const auto& edges = k < h.curve_edges.size() ? h.curve_edges[k] : h.edges;
    const auto& counts = h.counts[k];
    if (edges.size() != counts.size() + 1) continue;
    double total = 0;
    for (double v : counts) total += v;
    Series s;
    s.name = h.curve_label + " " +
             (k < h.curve_values.size() ? format_number(h.curve_values[k], 4) : std::to_string(k));
    s.color = hex(colormap(ColorMap::Viridis, n > 1 ? 0.9 * k / (n - 1) : 0.5));
    s.width = k + 1 == n ? 1.8 : 1.2;
    for (size_t b = 0; b < counts.size(); ++b) {
      double v = h.normalize && total > 0 ? counts[b] / total : counts[b];
      s.x.push_back(edges[b]);
      s.y.push_back(v);
      s.x.push_back(edges[b + 1]);
      s.y.push_back(v);
    }
    c.series.push_back(std::move(s));
  }
  if (!h.log_y) c.ymin = 0.0;
  double first = h.curve_values.empty() ? 0 : h.curve_values.front();
  double last = h.curve_values.empty() ? static_cast<double>(n) : h.curve_values.back();
  if (n > 1)
    c.sequential_legend = std::make_tuple(h.curve_label, first, last);
  else
    c.legend = false;
  return line_chart(c);
}

std::string image_grid(const std::vector<GridImage>& images, int columns, int scale) {
  columns = std::max(1, columns);
  int cell_w = 0, cell_h = 0;
  for (auto& im : images)
    cell_w = std::max(cell_w, im.width * scale), cell_h = std::max(cell_h, im.height * scale);
  const int pad = 6, caption_h = 14;
  const int rows = (static_cast<int>(images.size()) + columns - 1) / columns;
  const int width = columns * (cell_w + pad) + pad;
  const int height = rows * (cell_h + caption_h + pad) + pad;
  std::string s = open_svg(width, height, "image grid", "chart image-grid");
  for (size_t i = 0; i < images.size(); ++i) {
    const auto& im = images[i];
    int col = static_cast<int>(i) % columns, row = static_cast<int>(i) / columns;
    double x = pad + col * (cell_w + pad), y = pad + row * (cell_h + caption_h + pad);
    s += "<g class=\"grid-image\">";
    if (!im.tooltip.empty()) s += "<title>" + escape(im.tooltip) + "</title>";
    if (im.width > 0 && im.height > 0 &&
        im.pixels.size() >= static_cast<size_t>(im.width * im.height * im.channels))
      s += "<image x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" +
           std::to_string(im.width * scale) + "\" height=\"" + std::to_string(im.height * scale) +
           "\" style=\"image-rendering:pixelated\" href=\"" +
           png_data_uri(im.pixels.data(), im.width, im.height, im.channels) + "\"/>";
    s += "<rect x=\"" + num(x - 0.5) + "\" y=\"" + num(y - 0.5) + "\" width=\"" +
         num(im.width * scale + 1) + "\" height=\"" + num(im.height * scale + 1) +
         "\" fill=\"none\" stroke=\"" + (im.highlight ? "#d55e00" : "#ccc") + "\"/>";
    s += text(x + im.width * scale / 2.0, y + im.height * scale + 11, im.caption, "middle", 10,
              "class=\"caption\" fill=\"#333\"");
    s += "</g>";
  }
  return s + "</svg>";
}

}  // namespace gl::analysis::svg
