// test_report.cpp: the SVG helpers on known inputs, the PNG/npy/CSV readers and writers against
// independent decoders, and the HTML report of synthetic run directories read back by parsing.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>

#include "analysis/csv_read.h"
#include "analysis/npy_read.h"
#include "analysis/png.h"
#include "analysis/report.h"
#include "analysis/repr_report.h"
#include "analysis/svg.h"

namespace fs = std::filesystem;
using namespace gl::analysis;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("gl_report_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The magic, version and header of a .npy v1 file, written independently of the reader: the
// shape as the text given, the header padded to 64 bytes.
std::string npy_header(const std::string& descr, const std::string& shape) {
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += char(1);
  out += char(0);
  out += char(header.size() & 255);
  out += char(header.size() >> 8);
  return out + header;
}

// A .npy v1 file written independently of the reader.
template <typename T>
void write_npy(const fs::path& p, const std::string& descr, const std::vector<int64_t>& shape,
               const std::vector<T>& data) {
  std::string sh = "(";
  for (auto d : shape) sh += std::to_string(d) + ",";
  if (shape.size() > 1) sh.pop_back();
  sh += ")";
  std::string out = npy_header(descr, sh);
  out.append(reinterpret_cast<const char*>(data.data()), data.size() * sizeof(T));
  write(p, out);
}

int count(const std::string& s, const std::string& needle) {
  int n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

std::string attr(const std::string& tag, const std::string& name) {
  std::smatch m;
  std::regex re(" " + name + "=\"([^\"]*)\"");
  if (!std::regex_search(tag, m, re)) return "";
  return m[1];
}

std::pair<double, double> two(const std::string& s) {
  std::stringstream ss(s);
  double a, b;
  ss >> a >> b;
  return {a, b};
}

// Maps every point of the polyline of `series` in `svg_text` back to data coordinates using
// the plot group's domain and pixel range.
std::vector<std::pair<double, double>> invert_series(const std::string& svg_text,
                                                     const std::string& series) {
  std::smatch m;
  EXPECT_TRUE(std::regex_search(svg_text, m, std::regex("<g class=\"plot\"[^>]*>")));
  const std::string g = m[0];
  auto [x0, x1] = two(attr(g, "data-xdomain"));
  auto [y0, y1] = two(attr(g, "data-ydomain"));
  auto [px0, px1] = two(attr(g, "data-xrange"));
  auto [py0, py1] = two(attr(g, "data-yrange"));
  const bool logy = attr(g, "data-logy") == "1";
  if (logy) y0 = std::log10(y0), y1 = std::log10(y1);
  std::regex re("<polyline class=\"series\" data-series=\"" + series + "\" points=\"([^\"]*)\"");
  std::vector<std::pair<double, double>> out;
  for (auto it = std::sregex_iterator(svg_text.begin(), svg_text.end(), re);
       it != std::sregex_iterator(); ++it) {
    std::stringstream ss((*it)[1].str());
    std::string pt;
    while (ss >> pt) {
      double px = std::stod(pt.substr(0, pt.find(','))),
             py = std::stod(pt.substr(pt.find(',') + 1));
      double x = x0 + (px - px0) / (px1 - px0) * (x1 - x0);
      double y = y0 + (py - py0) / (py1 - py0) * (y1 - y0);
      out.emplace_back(x, logy ? std::pow(10.0, y) : y);
    }
  }
  return out;
}

// All <svg ...>...</svg> blocks of a document, in order.
std::vector<std::string> svgs(const std::string& html) {
  std::vector<std::string> out;
  for (size_t p = html.find("<svg"); p != std::string::npos; p = html.find("<svg", p + 1))
    out.push_back(html.substr(p, html.find("</svg>", p) + 6 - p));
  return out;
}

struct Known {
  std::vector<double> epoch{1, 2, 3, 4, 5};
  std::vector<double> train_loss{2.1, 1.2, 0.7, 0.45, 0.31};
  std::vector<double> test_loss{2.2, 1.3, 0.8, 0.6, 0.55};
  std::vector<double> train_acc{0.5, 0.7, 0.8, 0.88, 0.91};
  std::vector<double> test_acc{0.48, 0.66, 0.77, 0.84, 0.86};
};

// Writes a run directory with known values; confusion[t][p] = 100 on the diagonal, t+p off it.
void make_run(const fs::path& d, int layers = 0, bool diagnostics = false) {
  Known k;
  std::string m = "epoch,train_loss,test_loss,train_acc,test_acc,epoch_time";
  for (int i = 0; i < layers; ++i)
    m += ",act_mean_" + std::to_string(i) + ",act_std_" + std::to_string(i) + ",grad_norm_" +
         std::to_string(i);
  m += "\n";
  for (size_t e = 0; e < k.epoch.size(); ++e) {
    std::ostringstream row;
    row << k.epoch[e] << "," << k.train_loss[e] << "," << k.test_loss[e] << "," << k.train_acc[e]
        << "," << k.test_acc[e] << ",1.5";
    for (int i = 0; i < layers; ++i)
      row << "," << 0.01 * i << "," << 1.0 / (i + 1) << "," << std::pow(10.0, -i - 1.0) * (e + 1);
    m += row.str() + "\n";
  }
  write(d / "metrics.csv", m);
  write(d / "config.json",
        R"({"lr": 0.1, "note": "<script>alert(1)</script> & more", "opt": {"name": "sgd"}})");
  std::string conf = "true\\pred,0,1,2,3,4,5,6,7,8,9\n";
  std::string pc = "class,accuracy,precision,recall,f1,support\n";
  for (int t = 0; t < 10; ++t) {
    conf += std::to_string(t);
    for (int p = 0; p < 10; ++p) {
      conf += ',';
      conf += std::to_string(t == p ? 100 : t + p);
    }
    conf += "\n";
    pc += std::to_string(t) + ",0.9,0.9,0.9,0.9,145\n";
  }
  write(d / "confusion.csv", conf);
  write(d / "per_class.csv", pc);
  write(d / "misclassified.csv", "index,true,pred\n17,3,5\n42,7,1\n");
  std::vector<uint8_t> px(2 * 28 * 28);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i % 251);
  write_npy(d / "misclassified_images.npy", "|u1", {2, 28, 28}, px);
  if (diagnostics) {
    const fs::path g = d / "diagnostics";
    write(g / "layers.json",
          R"({"layers": [{"name": "fc0", "kind": "linear", "in": 4, "out": 8, "activation": "relu"},
      {"name": "fc1", "kind": "linear", "in": 8, "out": 3, "activation": "relu"}], "epochs": [1, 2, 3]})");
    std::string
        a = "epoch,layer,kind,class,mean,std,min,max\n",
        u = "epoch,layer,dead_fraction,saturated_fraction\n",
        gr = "epoch,layer,weight_grad_norm,bias_grad_norm,act_grad_norm,weight_norm,update_ratio\n";
    for (int e = 1; e <= 3; ++e)
      for (int l = 0; l < 2; ++l) {
        for (const char* kind : {"pre", "post"})
          a += std::to_string(e) + "," + std::to_string(l) + "," + kind + ",-1,0.1,0.5,-1,1\n";
        a += std::to_string(e) + "," + std::to_string(l) + ",post,3,0.2,0.4,0,1\n";
        u += std::to_string(e) + "," + std::to_string(l) + ",0.25,0.0\n";
        gr += std::to_string(e) + "," + std::to_string(l) + "," +
              std::to_string(0.001 * (l + 1) * e) + ",0.1,0.2,3,0.001\n";
      }
    write(g / "activations.csv", a);
    write(g / "units.csv", u);
    write(g / "grads.csv", gr);
    for (int l = 0; l < 2; ++l)
      for (std::string kind : {"pre", "post"}) {
        write_npy<int64_t>(g / ("hist_" + std::to_string(l) + "_" + kind + ".npy"), "<i8", {3, 4},
                           {1, 2, 3, 4, 4, 3, 2, 1, 0, 0, 5, 5});
        write_npy<double>(g / ("hist_" + std::to_string(l) + "_" + kind + "_edges.npy"), "<f8", {5},
                          {-2, -1, 0, 1, 2});
      }
    write(g / "dead_units.json", R"({"epoch": 3, "layers": [[1, 4], [2]]})");
    write_npy<float>(g / "selectivity_0.npy", "<f4", {2, 3}, {1, 0, 0.5, 0, 1, 0.5});
  }
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace

TEST(Svg, NiceTicksCoverRangeWithRoundSteps) {
  for (auto [lo, hi] : std::vector<std::pair<double, double>>{
           {0, 1}, {0.013, 0.087}, {-3.7, 12.2}, {1, 50}, {1e-6, 3e-6}, {97, 1003}}) {
    auto t = svg::nice_ticks(lo, hi, 5);
    ASSERT_GE(t.size(), 3u) << lo << " " << hi;
    EXPECT_LE(t.size(), 12u);
    EXPECT_LE(t.front(), lo + 1e-12);
    EXPECT_GE(t.back(), hi - 1e-12);
    double step = t[1] - t[0];
    double mant = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
    EXPECT_TRUE(std::fabs(mant - 1) < 1e-6 || std::fabs(mant - 2) < 1e-6 ||
                std::fabs(mant - 2.5) < 1e-6 || std::fabs(mant - 5) < 1e-6)
        << "step " << step;
    for (size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], step, step * 1e-6);
    // Ticks are multiples of the step (so labels are round numbers).
    for (double v : t) EXPECT_NEAR(v / step, std::round(v / step), 1e-6);
  }
  auto t = svg::nice_ticks(0, 1, 5);
  EXPECT_EQ(svg::format_tick(t[1], t[1] - t[0]), "0.2");
  EXPECT_EQ(svg::format_tick(0.25, 0.25), "0.25");
  EXPECT_EQ(svg::format_tick(10, 5), "10");
  // Steps and ticks with halves keep them (2.5 was printed "2", 7.5 "8").
  EXPECT_EQ(svg::format_tick(2.5, 2.5), "2.5");
  EXPECT_EQ(svg::format_tick(-2.5, 2.5), "-2.5");
  EXPECT_EQ(svg::format_tick(5, 2.5), "5.0");
  EXPECT_EQ(svg::format_tick(7.5, 5), "7.5");
  EXPECT_EQ(svg::format_tick(12.5, 5), "12.5");
  EXPECT_EQ(svg::format_tick(0.1 + 0.2, 0.1), "0.3");
}

TEST(Svg, LogTicksArePowersOfTenOrOneTwoFive) {
  auto t = svg::log_ticks(3e-7, 0.02);
  EXPECT_LE(t.front(), 3e-7);
  EXPECT_GE(t.back(), 0.02);
  for (double v : t) EXPECT_NEAR(std::log10(v), std::round(std::log10(v)), 1e-9);
  auto f = svg::log_ticks(0.3, 0.9);
  EXPECT_LE(f.front(), 0.3);
  EXPECT_GE(f.back(), 0.9);
  EXPECT_LE(f.size(), 5u);
}

TEST(Svg, ColorMapsMatchPublishedEndpoints) {
  EXPECT_EQ(svg::hex(svg::colormap(svg::ColorMap::Viridis, 0)), "#440154");  // matplotlib viridis
  EXPECT_EQ(svg::hex(svg::colormap(svg::ColorMap::Viridis, 1)), "#fde725");
  EXPECT_EQ(svg::hex(svg::colormap(svg::ColorMap::Viridis, 7)), "#fde725");  // clamped
  auto lum = [](svg::Rgb c) { return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b; };
  double prev = -1;
  for (int i = 0; i <= 100; ++i) {  // viridis is perceptually monotone: brightness only rises
    double l = lum(svg::colormap(svg::ColorMap::Viridis, i / 100.0));
    EXPECT_GE(l, prev - 0.5);
    prev = l;
  }
  auto mid = svg::colormap(svg::ColorMap::Diverging, 0.5);
  EXPECT_GT(mid.r, 240);
  EXPECT_GT(mid.g, 240);
  auto lo = svg::colormap(svg::ColorMap::Diverging, 0),
       hi = svg::colormap(svg::ColorMap::Diverging, 1);
  EXPECT_GT(lo.b, lo.r);
  EXPECT_GT(hi.r, hi.b);
}

TEST(Svg, EscapesText) {
  EXPECT_EQ(svg::escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
  svg::LineChart c;
  c.title = "<x & y>";
  c.series.push_back({"s\"1", {0, 1}, {0, 1}, ""});
  auto s = svg::line_chart(c);
  EXPECT_EQ(s.find("<x & y>"), std::string::npos);
  EXPECT_NE(s.find("&lt;x &amp; y&gt;"), std::string::npos);
  EXPECT_NE(s.find("data-series=\"s&quot;1\""), std::string::npos);
}

TEST(Svg, LineChartPointsInvertToDataAndNaNMakesGaps) {
  svg::LineChart c;
  c.series.push_back({"a", {1, 2, 3, 4, 5, 6}, {0.5, 2.5, NAN, 7.25, 3, 1}, ""});
  auto s = svg::line_chart(c);
  EXPECT_EQ(count(s, "<polyline"), 2);  // the NaN splits the curve
  auto pts = invert_series(s, "a");
  std::vector<std::pair<double, double>> want{{1, 0.5}, {2, 2.5}, {4, 7.25}, {5, 3}, {6, 1}};
  ASSERT_EQ(pts.size(), want.size());
  for (size_t i = 0; i < pts.size(); ++i) {
    EXPECT_NEAR(pts[i].first, want[i].first, 0.01);
    EXPECT_NEAR(pts[i].second, want[i].second, 0.01);
  }
  c.log_y = true;
  c.series[0].y = {1e-5, 1e-3, 0, 0.2, 3, 10};  // 0 cannot be drawn on a log axis: a gap
  auto l = svg::line_chart(c);
  auto lp = invert_series(l, "a");
  ASSERT_EQ(lp.size(), 5u);
  EXPECT_NEAR(std::log10(lp[0].second), -5, 1e-3);
  EXPECT_NEAR(std::log10(lp[2].second), std::log10(0.2), 1e-3);
}

TEST(Svg, LongLegendNamesKeepTheirEnds) {
  // Two series that differ only at the end of a long name stay apart in the legend (cut at 22
  // characters they read the same), and the whole name is the entry's tooltip.
  svg::LineChart c;
  for (const char* n : {"he_normal:factor=1 (epoch 1)", "he_normal:factor=1 (epoch 5)"})
    c.series.push_back({n, {1, 2}, {1, 2}, ""});
  const std::string s = svg::line_chart(c);
  EXPECT_NE(s.find("(epoch 1)</text>"), std::string::npos) << s;
  EXPECT_NE(s.find("(epoch 5)</text>"), std::string::npos) << s;
  EXPECT_NE(s.find("<title>he_normal:factor=1 (epoch 5)</title>"), std::string::npos);
}

// A series with no point to draw (all NaN; on a log axis, all non-positive too) has no legend
// entry and leaves the axis ranges to the others.
TEST(Svg, SeriesWithNothingToDrawHaveNoLegendEntry) {
  svg::LineChart c;
  c.log_y = true;
  c.series.push_back({"drawn", {0, 1, 2}, {1, 10, 100}, ""});
  c.series.push_back({"all nan", {0, 1, 2}, {NAN, NAN, NAN}, ""});
  c.series.push_back({"all zero", {0, 1, 2}, {0, 0, 0}, ""});
  c.series.push_back({"no points", {}, {}, ""});
  const std::string s = svg::line_chart(c);
  EXPECT_NE(s.find(">drawn</text>"), std::string::npos) << s;
  for (const char* name : {"all nan", "all zero", "no points"})
    EXPECT_EQ(s.find(name), std::string::npos) << name << "\n" << s;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(s, m, std::regex("<g class=\"plot\"[^>]*>")));
  EXPECT_EQ(two(attr(m[0], "data-xdomain")), std::make_pair(0.0, 2.0));
  EXPECT_EQ(two(attr(m[0], "data-ydomain")), std::make_pair(1.0, 100.0));
}

TEST(Svg, OneIntegerXGetsOneIntegerTick) {
  // A depth-1 network's per-layer chart has one x value, layer 0: it was labelled -0.50, 0.00,
  // 0.50.
  svg::LineChart c;
  c.width = 900;  // room for several ticks
  c.series.push_back({"a", {0}, {1.5}, ""});
  const std::string s = svg::line_chart(c);
  for (const char* frac : {">-0.", ">0.1<", ">0.2<", ">0.25<", ">0.4<", ">0.5<"})
    EXPECT_EQ(s.find(frac), std::string::npos) << frac << "\n" << s;
  EXPECT_NE(s.find(">0</text>"), std::string::npos) << s;
}

TEST(Svg, HeatmapCellsCarryValuesAndLabels) {
  svg::Heatmap h;
  h.row_labels = {"r0", "r1"};
  h.col_labels = {"c0", "c1", "c2"};
  h.values = {1, 2, 3, 4, NAN, 6};
  h.cell_labels = true;
  auto s = svg::heatmap(h);
  EXPECT_EQ(count(s, "class=\"cell\""), 5);  // the NaN cell is blank
  EXPECT_NE(s.find("data-row=\"1\" data-col=\"2\" data-value=\"6\""), std::string::npos);
  EXPECT_NE(s.find("<title>r0, c1: 2</title>"), std::string::npos);
  // The largest value gets the top of the colour map.
  EXPECT_NE(s.find("data-value=\"6\" x=\""), std::string::npos);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(s, m, std::regex("data-value=\"6\"[^>]*fill=\"(#[0-9a-f]{6})\"")));
  EXPECT_EQ(m[1].str(), svg::hex(svg::colormap(svg::ColorMap::Viridis, 1)));
}

TEST(Png, ChunksHaveValidCrcAndPixelsRoundTrip) {
  const int w = 7, h = 5;
  std::vector<uint8_t> px(w * h * 3);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 37);
  std::string png = encode_png(px.data(), w, h, 3);
  ASSERT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  size_t pos = 8;
  std::string idat;
  int chunks = 0;
  auto u32 = [&](size_t p) {
    return (uint32_t(uint8_t(png[p])) << 24) | (uint32_t(uint8_t(png[p + 1])) << 16) |
           (uint32_t(uint8_t(png[p + 2])) << 8) | uint32_t(uint8_t(png[p + 3]));
  };
  while (pos < png.size()) {
    uint32_t len = u32(pos);
    std::string type = png.substr(pos + 4, 4);
    uint32_t crc = u32(pos + 8 + len);
    // zlib's crc32 is the independent oracle for our table-driven CRC.
    EXPECT_EQ(crc, ::crc32(0, reinterpret_cast<const Bytef*>(png.data() + pos + 4), len + 4))
        << type;
    if (type == "IHDR") {
      EXPECT_EQ(u32(pos + 8), uint32_t(w));
      EXPECT_EQ(u32(pos + 12), uint32_t(h));
    }
    if (type == "IDAT") idat += png.substr(pos + 8, len);
    pos += 12 + len;
    ++chunks;
  }
  EXPECT_EQ(chunks, 3);
  std::vector<uint8_t> raw((w * 3 + 1) * h);
  uLongf n = raw.size();
  ASSERT_EQ(uncompress(raw.data(), &n, reinterpret_cast<const Bytef*>(idat.data()), idat.size()),
            Z_OK);
  ASSERT_EQ(n, raw.size());
  for (int y = 0; y < h; ++y) {
    EXPECT_EQ(raw[y * (w * 3 + 1)], 0);
    for (int i = 0; i < w * 3; ++i) EXPECT_EQ(raw[y * (w * 3 + 1) + 1 + i], px[y * w * 3 + i]);
  }
  EXPECT_EQ(base64("Man"), "TWFu");
  EXPECT_EQ(base64("Ma"), "TWE=");
  EXPECT_EQ(base64("M"), "TQ==");
}

TEST(NpyRead, ReadsDtypesAndRejectsBadFiles) {
  TempDir t;
  write_npy<double>(t.path / "a.npy", "<f8", {2, 3}, {1, 2, 3, 4, 5, 6.5});
  auto a = read_npy((t.path / "a.npy").string());
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.values.back(), 6.5);
  write_npy<int64_t>(t.path / "b.npy", "<i8", {3}, {-4, 0, 1ll << 40});
  auto b = read_npy((t.path / "b.npy").string());
  EXPECT_EQ(b.values[0], -4);
  EXPECT_EQ(b.values[2], std::pow(2.0, 40));
  write_npy<double>(t.path / "short.npy", "<f8", {4}, {1, 2});
  EXPECT_NE(message_of([&] { read_npy((t.path / "short.npy").string()); }).find("short.npy"),
            std::string::npos);
  write(t.path / "junk.npy", "not numpy");
  EXPECT_NE(message_of([&] { read_npy((t.path / "junk.npy").string()); }).find("not a .npy"),
            std::string::npos);
}

// The report's .npy reader once parsed shapes by itself: a shape whose size overflows wrapped
// its element count (and the report read past the file's end), and a non-integer entry gave
// "stoll" alone. It now reads through the engine's checked reader, naming the file.
TEST(NpyRead, OverflowingOrNonIntegerShapesNameTheFile) {
  TempDir t;
  auto header_only = [&](const std::string& name, const std::string& shape) {
    write(t.path / name, npy_header("|u1", shape));
    return (t.path / name).string();
  };
  std::string msg =
      message_of([&] { read_npy(header_only("wrap.npy", "(85, 4294967296, 4294967296)")); });
  EXPECT_NE(msg.find("wrap.npy"), std::string::npos) << msg;
  EXPECT_NE(
      msg.find("shape (85, 4294967296, 4294967296) of |u1 has more bytes than fit in 64 bits"),
      std::string::npos)
      << msg;
  msg = message_of([&] { read_npy(header_only("x.npy", "(2, 'x')")); });
  EXPECT_NE(msg.find("x.npy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("shape entries must be non-negative integers"), std::string::npos) << msg;
  // The report names the run's file.
  make_run(t.path / "run");
  header_only("run/misclassified_images.npy", "(2, 4294967296, 4294967296)");
  msg = message_of(
      [&] { write_report({(t.path / "run").string()}, (t.path / "out.html").string(), {}); });
  EXPECT_NE(msg.find("misclassified_images.npy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("more bytes than fit in 64 bits"), std::string::npos) << msg;
}

// A NUL byte in a cell once cut the message off at that byte ("column 'epoch': 'ab"), and a
// cell "1<NUL>x" read as 1. Control bytes are shown as \xNN; the cell must be a number whole.
TEST(CsvRead, ControlBytesInACellAreShownAndRefused) {
  TempDir t;
  write(t.path / "m.csv", std::string("epoch,loss\nab\0cd\x1b[2J,1\n1\0x,2\n", 29));
  auto tab = read_csv((t.path / "m.csv").string());
  std::string msg = message_of([&] { tab.number(0, 0); });
  EXPECT_NE(msg.find("m.csv:2: column 'epoch': 'ab\\x00cd\\x1B[2J' is not a number"),
            std::string::npos)
      << msg;
  EXPECT_EQ(msg.find('\0'), std::string::npos);
  msg = message_of([&] { tab.number(1, 0); });
  EXPECT_NE(msg.find("m.csv:3: column 'epoch': '1\\x00x' is not a number"), std::string::npos)
      << msg;
  EXPECT_EQ(tab.number(1, 1), 2.0);
}

TEST(CsvRead, ErrorsNameFileAndLine) {
  TempDir t;
  write(t.path / "x.csv", "a,b\n1,2\n\n3\n");
  auto msg = message_of([&] { read_csv((t.path / "x.csv").string()); });
  EXPECT_NE(msg.find("x.csv:4: expected 2 fields, got 1"), std::string::npos) << msg;
  write(t.path / "y.csv", "a,b\n1,2\n3,oops\n");
  auto tab = read_csv((t.path / "y.csv").string());
  msg = message_of([&] { tab.number(1, 1); });
  EXPECT_NE(msg.find("y.csv:3: column 'b': 'oops' is not a number"), std::string::npos) << msg;
}

TEST(Report, CurvesMapBackToMetrics) {
  TempDir t;
  make_run(t.path / "run");
  write_report({(t.path / "run").string()}, (t.path / "out.html").string(), {});
  const std::string html = read(t.path / "out.html");
  auto figs = svgs(html);
  // loss, accuracy, confusion, per-class bars, misclassified grid
  ASSERT_EQ(figs.size(), 5u);
  Known k;
  auto check = [&](const std::string& s, const std::string& series, const std::vector<double>& want,
                   double scale) {
    auto pts = invert_series(s, series);
    ASSERT_EQ(pts.size(), want.size()) << series;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(pts[i].first, k.epoch[i], 1e-2);
      EXPECT_NEAR(pts[i].second, want[i] * scale, 1e-2 * scale);
    }
  };
  check(figs[0], "train", k.train_loss, 1);
  check(figs[0], "test", k.test_loss, 1);
  check(figs[1], "train", k.train_acc, 100);  // fractions are shown as percent
  check(figs[1], "test", k.test_acc, 100);
  EXPECT_EQ(count(html, "<figcaption>"), 5);
}

TEST(Report, ConfusionCellsCarryCounts) {
  TempDir t;
  make_run(t.path / "run");
  RunData run = load_run((t.path / "run").string());
  const std::string html = render_report({run}, {});
  for (int tr = 0; tr < 10; ++tr)
    for (int p = 0; p < 10; ++p) {
      int n = tr == p ? 100 : tr + p;
      std::string tip = "true " + std::to_string(tr) + " → predicted " + std::to_string(p) + ": " +
                        std::to_string(n) + " (";
      EXPECT_NE(html.find(tip), std::string::npos) << tip;
    }
  // Cell labels are the raw counts: 10 labels "100" on the diagonal; "9" appears for
  // (0,9),(1,8)..(9,0).
  EXPECT_EQ(count(html, "class=\"cell-label\" pointer-events=\"none\" fill=\"#fff\">100</text>"),
            10);
  std::regex nine("class=\"cell-label\"[^>]*>9</text>");
  EXPECT_EQ(
      std::distance(std::sregex_iterator(html.begin(), html.end(), nine), std::sregex_iterator()),
      10);
  // The misclassified grid labels pred/true.
  EXPECT_NE(html.find(">5/3</text>"), std::string::npos);
  EXPECT_NE(html.find(">1/7</text>"), std::string::npos);
  EXPECT_EQ(count(html, "data:image/png;base64,"), 2);
}

TEST(Report, ADivergedRunSaysSoAndWhy) {
  TempDir t;
  make_run(t.path / "run");
  write(t.path / "run" / "diverged.json",
        R"({"epoch": 2, "step": 17, "error": "loss became nan at epoch 2 step 9"})");
  const std::string html = render_report({load_run((t.path / "run").string())}, {});
  EXPECT_NE(html.find("diverged: loss became nan at epoch 2 step 9"), std::string::npos);
  // Its last metrics.csv row is the last epoch it finished, not a final result.
  const RunData run = load_run((t.path / "run").string());
  EXPECT_TRUE(run.diverged);
  ASSERT_EQ(run.metrics.epoch.back(), 5);
  EXPECT_NE(html.find("test accuracy at epoch 5, the last before it diverged"), std::string::npos);
  EXPECT_NE(html.find("test loss at epoch 5, the last before it diverged"), std::string::npos);
  EXPECT_EQ(html.find("final test accuracy"), std::string::npos);
  make_run(t.path / "fine");
  const std::string fine = render_report({load_run((t.path / "fine").string())}, {});
  EXPECT_EQ(fine.find("diverged"), std::string::npos);
  EXPECT_NE(fine.find("final test accuracy"), std::string::npos);
}

TEST(Report, EscapesConfigAndNames) {
  TempDir t;
  make_run(t.path / "a&b<c>");
  write_report({(t.path / "a&b<c>").string()}, (t.path / "o.html").string(), {});
  const std::string html = read(t.path / "o.html");
  EXPECT_EQ(html.find("<script>alert"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"), std::string::npos);
  EXPECT_NE(html.find("a&amp;b&lt;c&gt;"), std::string::npos);
  EXPECT_NE(html.find("opt.name"), std::string::npos);  // nested config flattened
  EXPECT_EQ(count(html, "<script>"), 1);                // only the toggle script
}

TEST(Report, PerLayerAndDiagnosticsFigures) {
  TempDir t;
  make_run(t.path / "deep", 3, true);
  RunData run = load_run((t.path / "deep").string());
  ASSERT_TRUE(run.diagnostics);
  EXPECT_EQ(run.metrics.layers(), 3u);
  EXPECT_EQ(run.diagnostics->histograms.size(), 4u);
  const std::string html = render_report({run}, {});
  // 5 base + 4 per-layer + 4 histograms + activations (2 profiles, 2 heatmaps, 2 per-class)
  // + units (2) + grads (profile, heatmap, act-grad profile, update ratio, weight norm) + 1
  // selectivity.
  EXPECT_EQ(count(html, "<svg"), 5 + 4 + 4 + 6 + 2 + 5 + 1);
  // The gradient-norm depth profile of epoch 3 maps back to 0.001 * (layer + 1) * 3 on a log axis.
  auto figs = svgs(html);
  auto it = std::find_if(figs.begin(), figs.end(), [](auto& s) {
    return s.find("Weight-gradient norm by depth") != std::string::npos;
  });
  ASSERT_NE(it, figs.end());
  auto pts = invert_series(*it, "epoch 3");
  ASSERT_EQ(pts.size(), 2u);
  for (int l = 0; l < 2; ++l) EXPECT_NEAR(pts[l].second / (0.003 * (l + 1)), 1.0, 1e-3);
  // Histogram panels: normalised counts 1,2,3,4 / 10 for the first epoch.
  auto h = std::find_if(figs.begin(), figs.end(), [](auto& s) {
    return s.find("data-series=\"epoch 1\"") != std::string::npos &&
           s.find("activation value") != std::string::npos;
  });
  ASSERT_NE(h, figs.end());
  auto hp = invert_series(*h, "epoch 1");
  ASSERT_EQ(hp.size(), 8u);  // a step curve: two points per bin
  for (int b = 0; b < 4; ++b) EXPECT_NEAR(hp[2 * b].second, (b + 1) / 10.0, 1e-3);
  EXPECT_NE(html.find("data-show=\"pre\""), std::string::npos);
}

// A histogram with a spike (ReLU's zeros) gets a log y axis; a flat one keeps a linear axis,
// and the spiky panel's curves still map back to the normalised counts.
// Layer 0's post-activation histogram of a fixture run: 3 epoch rows of 32 bins over
// [lo, lo + 2], bin b holding count(b) in every row. Returns the counts written.
static std::vector<int64_t> write_layer0_histogram(const fs::path& g, double lo,
                                                   const std::function<int64_t(int)>& count) {
  std::vector<int64_t> counts;
  for (int e = 0; e < 3; ++e)
    for (int b = 0; b < 32; ++b) counts.push_back(count(b));
  std::vector<double> edges;
  for (int b = 0; b <= 32; ++b) edges.push_back(lo + b / 16.0);
  write_npy<int64_t>(g / "hist_0_post.npy", "<i8", {3, 32}, counts);
  write_npy<double>(g / "hist_0_post_edges.npy", "<f8", {33}, edges);
  return counts;
}

TEST(Report, SpikyHistogramsGetALogAxis) {
  TempDir t;
  make_run(t.path / "spiky", 3, true);
  const fs::path g = t.path / "spiky" / "diagnostics";
  const std::vector<int64_t> counts =
      write_layer0_histogram(g, -1.0, [](int b) { return b == 16 ? 900 : 10 + b % 3; });
  RunData run = load_run((t.path / "spiky").string());
  const std::string html = render_report({run}, {});
  int spiky = 0, flat = 0;
  for (const std::string& svg : svgs(html)) {
    if (svg.find("post-activation value") == std::string::npos) continue;
    const bool logy = svg.find("data-logy=\"1\"") != std::string::npos;
    if (svg.find("fraction (log scale)") != std::string::npos) {
      ++spiky;
      EXPECT_TRUE(logy);
      double total = 0;
      for (int b = 0; b < 32; ++b) total += double(counts[std::size_t(b)]);
      auto pts = invert_series(svg, "epoch 1");
      ASSERT_EQ(pts.size(), 64u);
      EXPECT_NEAR(pts[32].second / (900.0 / total), 1.0, 1e-3);
      EXPECT_NEAR(pts[0].second / (10.0 / total), 1.0, 1e-3);
    } else {
      ++flat;
      EXPECT_FALSE(logy);
    }
  }
  EXPECT_EQ(spiky, 1);  // layer 0's post-activations
  EXPECT_EQ(flat, 1);   // layer 1's: counts 1..5 of the fixture
}

TEST(Report, SeveralRunsGetAComparison) {
  TempDir t;
  make_run(t.path / "raw", 2);
  make_run(t.path / "std", 2);
  const std::string html =
      render_report({load_run((t.path / "raw").string()), load_run((t.path / "std").string())}, {});
  EXPECT_NE(html.find("id=\"comparison\""), std::string::npos);
  EXPECT_NE(html.find("data-series=\"raw (test)\""), std::string::npos);
  EXPECT_NE(html.find("data-series=\"std (train)\""), std::string::npos);
  EXPECT_NE(html.find("repeat(2,"), std::string::npos);
  EXPECT_EQ(count(html, "<article class=\"run\""), 2);
}

TEST(Report, BadInputsThrowNamingTheFile) {
  TempDir t;
  auto dir = (t.path / "nope").string();
  EXPECT_EQ(message_of([&] { load_run(dir); }), "run directory '" + dir + "' does not exist");
  fs::create_directories(t.path / "empty");
  EXPECT_EQ(message_of([&] { load_run((t.path / "empty").string()); }),
            "run directory '" + (t.path / "empty").string() + "' has no metrics.csv");
  make_run(t.path / "bad");
  write(t.path / "bad" / "metrics.csv",
        "epoch,train_loss,test_loss,train_acc,test_acc,epoch_time\n1,2,3,0.1,0.2,1\n2,x,3,0.1,0.2,"
        "1\n");
  auto msg = message_of([&] { load_run((t.path / "bad").string()); });
  EXPECT_NE(msg.find("metrics.csv:3: column 'train_loss': 'x' is not a number"), std::string::npos)
      << msg;
  write(t.path / "bad" / "metrics.csv", "epoch,train_loss\n1,2\n");
  msg = message_of([&] { load_run((t.path / "bad").string()); });
  EXPECT_NE(msg.find("metrics.csv: missing column 'test_loss'"), std::string::npos) << msg;
  make_run(t.path / "bad2");
  write(t.path / "bad2" / "confusion.csv", "true\\pred,0,1\n0,1,2\n1,3\n");
  msg = message_of([&] { load_run((t.path / "bad2").string()); });
  EXPECT_NE(msg.find("confusion.csv:3: expected 3 fields, got 2"), std::string::npos) << msg;
  // Layer indices out of range (a negative one indexed before the tables, a huge one sized
  // them) are refused with the file and line, in every file that names layers.
  const std::string header_g =
      "epoch,layer,weight_grad_norm,bias_grad_norm,act_grad_norm,weight_norm,update_ratio\n";
  const std::vector<std::tuple<std::string, std::string, std::string>> bad_layers{
      {"grads.csv", header_g + "1,-3,0.1,0.1,0.2,3,0.001\n", "grads.csv:2: column 'layer'"},
      {"grads.csv", header_g + "1,100000000,0.1,0.1,0.2,3,0.001\n", "grads.csv:2: column 'layer'"},
      {"units.csv", "epoch,layer,dead_fraction,saturated_fraction\n1,-2,0.25,0\n",
       "units.csv:2: column 'layer'"},
      {"activations.csv", "epoch,layer,kind,class,mean,std,min,max\n1,99999999,post,-1,0,1,0,1\n",
       "activations.csv:2: column 'layer'"},
      {"activations.csv", "epoch,layer,kind,class,mean,std,min,max\n1,0,post,-5,0,1,0,1\n",
       "activations.csv:2: column 'class'"}};
  for (const auto& [file, text, want] : bad_layers) {
    SCOPED_TRACE(text);
    const fs::path d = t.path / "bad_layer";
    fs::remove_all(d);
    make_run(d, 2, true);
    write(d / "diagnostics" / file, text);
    msg = message_of([&] { load_run(d.string()); });
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
    EXPECT_NE(msg.find("must be in ["), std::string::npos) << msg;
  }
  {
    const fs::path d = t.path / "bad_layer";
    fs::remove_all(d);
    make_run(d, 2, true);
    std::ifstream in(d / "metrics.csv");
    std::string m((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    m.replace(m.find("act_mean_1"), 10, "act_mean_99999999");
    write(d / "metrics.csv", m);
    msg = message_of([&] { load_run(d.string()); });
    EXPECT_NE(msg.find("act_mean_99999999: layer 99999999 is out of range"), std::string::npos)
        << msg;
    make_run(d, 2, true);
    fs::rename(d / "diagnostics" / "hist_1_post.npy", d / "diagnostics" / "hist_12345678_post.npy");
    msg = message_of([&] { load_run(d.string()); });
    EXPECT_NE(msg.find("hist_12345678_post.npy: layer 12345678 is out of range"), std::string::npos)
        << msg;
  }
  // Failing write leaves no file behind.
  EXPECT_NE(message_of([&] {
              write_report({dir}, (t.path / "r.html").string(), {});
            }).find("does not exist"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(t.path / "r.html"));
}

// The analysis/ files of a run, small and valid: 4 units of h0 over 3 classes.
void make_analysis(const fs::path& d) {
  const fs::path a = d / "analysis";
  write(a / "neurons_h0.json", R"({"layer": "h0", "order": [2, 0, 1, 3], "preferred": [0, 1, 2, -1],
      "selectivity": [0.5, null, 0.25, 0], "top_units": [2, 0]})");
  write_npy<float>(a / "neurons_classmean_h0.npy", "<f4", {4, 3},
                   {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0});
  write_npy<uint8_t>(a / "neurons_top_h0.npy", "|u1", {2, 1, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
  write_npy<float>(a / "pca_h0.npy", "<f4", {4, 3}, {0, 0, 0, 1, 1, 1, 2, 0, 2, 0, 2, -1});
  write(a / "pca_h0.json", R"({"layer": "h0", "explained_variance_ratio": [0.6, 0.3, 0.1]})");
  write_npy<float>(a / "tsne_h0.npy", "<f4", {4, 3}, {0, 0, 0, 1, 1, 1, 2, 0, 2, 0, 2, 1});
  write(a / "tsne_h0.json", R"({"method": "exact", "kl_divergence": 0.5, "seconds": 1})");
  write(a / "augment.json", R"({"index": 3, "label": 1, "augmentations": 2,
      "reference_examples": 4, "layers": [{"name": "h0", "mean_ratio": 0.5, "median_ratio": null}]})");
}

// Out-of-range indices, class labels and list lengths in analysis/ files once crashed the
// report (a unit index read out of bounds, a vector sized by a negative number) or hung it (a
// scatter looping over every class up to a label of 1e9). Each is refused naming the file, the
// key and the value.
TEST(Report, AnalysisFilesWithOutOfRangeValuesAreRefused) {
  TempDir t;
  const fs::path d = t.path / "run";
  make_run(d);
  make_analysis(d);
  const std::string out = (t.path / "r.html").string();
  ASSERT_EQ(message_of([&] { write_report({d.string()}, out, {}); }), "(no exception)");
  // NaN is written as null: a t-SNE without a KL value draws.
  write(d / "analysis" / "tsne_h0.json", R"({"method": "exact", "kl_divergence": null})");
  ASSERT_EQ(message_of([&] { write_report({d.string()}, out, {}); }), "(no exception)");
  // neurons_h0.json with the given lists (4 units, 3 classes in the class means).
  auto neurons = [](const std::string& order, const std::string& preferred,
                    const std::string& selectivity, const std::string& top_units) {
    return R"({"order": )" + order + R"(, "preferred": )" + preferred + R"(, "selectivity": )" +
           selectivity + R"(, "top_units": )" + top_units + "}";
  };
  const std::string order = "[2, 0, 1, 3]", preferred = "[0, 1, 2, -1]", sel = "[0, 0, 0, 0]";
  const std::string file = "neurons_h0.json: ";
  const std::vector<std::tuple<std::string, std::string, std::string>> bad_json{
      {"neurons_h0.json", neurons(order, preferred, sel, "[1000000000, 0]"),
       file + "top_units[0] must be an integer in [0, 3], got 1000000000"},
      {"neurons_h0.json", neurons(order, preferred, sel, "[-5, 0]"),
       file + "top_units[0] must be an integer in [0, 3], got -5"},
      {"neurons_h0.json", neurons("[2, 0, 1e9]", preferred, sel, "[2, 0]"),
       file + "order[2] must be an integer in [0, 3]"},
      {"neurons_h0.json", neurons("[40]", preferred, sel, "[2, 0]"),
       file + "order[0] must be an integer in [0, 3], got 40"},
      {"neurons_h0.json", neurons(order, preferred, sel, "[2]"),
       file + "\"top_units\" has 1 entries, need 2"},
      {"neurons_h0.json", neurons(order, "[0]", sel, "[2, 0]"),
       file + "\"preferred\" has 1 entries, need 4"},
      {"neurons_h0.json", neurons(order, "[0, 1, 2, 7]", sel, "[2, 0]"),
       file + "preferred[3] must be an integer in [-1, 2], got 7"},
      {"neurons_h0.json", neurons(order, preferred, "[0]", "[2, 0]"),
       file + "\"selectivity\" must be a list of 4 values"},
      {"tsne_h0.json", R"({"method": "exact", "kl_divergence": "low"})",
       "tsne_h0.json: key 'kl_divergence' must be a number, got \"low\""},
      {"augment.json", R"({"layers": [{"name": "h0", "mean_ratio": [1]}]})",
       "augment.json: key 'mean_ratio' must be a number, got [1]"}};
  for (const auto& [name, text, want] : bad_json) {
    SCOPED_TRACE(text);
    make_analysis(d);
    write(d / "analysis" / name, text);
    const std::string msg = message_of([&] { write_report({d.string()}, out, {}); });
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
  }
  // The class column of a scatter: an integer in [-1, 65535].
  for (float label : {1e9f, -5.0f, std::nanf(""), 0.5f}) {
    SCOPED_TRACE(label);
    make_analysis(d);
    write_npy<float>(d / "analysis" / "pca_h0.npy", "<f4", {2, 3}, {0, 0, 0, 1, 1, label});
    const std::string msg = message_of([&] { write_report({d.string()}, out, {}); });
    EXPECT_NE(msg.find("pca_h0.npy: row 1: the class must be an integer in [-1, 65535]"),
              std::string::npos)
        << msg;
  }
}

// A directory where a run file belongs is named as such (it was the library's
// "basic_filebuf::underflow error reading the file" or "empty file (no header)").
TEST(Report, ADirectoryWhereARunFileBelongsIsNamed) {
  TempDir t;
  for (const std::string file :
       {"config.json", "per_class.csv", "misclassified_images.npy", "diagnostics/layers.json",
        "analysis/neurons_classmean_h0.npy", "analysis/pca_h0.json"}) {
    SCOPED_TRACE(file);
    const fs::path d = t.path / "run";
    fs::remove_all(d);
    make_run(d, 2, true);
    make_analysis(d);
    fs::remove(d / file);
    fs::create_directories(d / file);
    const std::string msg =
        message_of([&] { write_report({d.string()}, (t.path / "r.html").string(), {}); });
    EXPECT_NE(msg.find((d / file).string() + "': it is a directory"), std::string::npos) << msg;
  }
}

// The cells of a class x unit heatmap in `svg_text` (tooltips "class, unit: value"), one
// (preferred class, unit) per column in column order: the class whose cell holds at least 1.
std::vector<std::pair<int, int>> preferred_columns(const std::string& svg_text) {
  std::map<int, std::pair<int, int>> by_col;
  std::regex re("data-col=\"([0-9]+)\"[^>]*><title>([0-9]+), ([0-9]+): ([^<]*)</title>");
  for (auto it = std::sregex_iterator(svg_text.begin(), svg_text.end(), re);
       it != std::sregex_iterator(); ++it)
    if (std::stod((*it)[4].str()) >= 1)
      by_col[std::stoi((*it)[1].str())] = {std::stoi((*it)[2].str()), std::stoi((*it)[3].str())};
  std::vector<std::pair<int, int>> out;
  for (auto& [c, v] : by_col) out.push_back(v);
  return out;
}

// How many columns of `cols` prefer each class, and that the columns go by class.
// The (preferred class, unit) columns of the report's heatmap whose SVG holds `axis_label`
// (none when no figure does).
std::vector<std::pair<int, int>> heatmap_columns(const std::string& html,
                                                 const std::string& axis_label) {
  for (const std::string& s : svgs(html))
    if (s.find(axis_label) != std::string::npos) return preferred_columns(s);
  return {};
}

std::map<int, int> per_class_counts(const std::vector<std::pair<int, int>>& cols) {
  std::map<int, int> n;
  for (size_t i = 0; i < cols.size(); ++i) {
    ++n[cols[i].first];
    if (i) {
      EXPECT_LE(cols[i - 1].first, cols[i].first) << "column " << i;
    }
  }
  return n;
}

// Cutting the class-sorted units after the first 96 dropped the last classes whole (here 8 and
// 9 of a 128-unit layer) under a caption saying only "96 of 128 units". Every class keeps its
// share: units are taken class by class in turn, each class's strongest first.
TEST(Report, SelectivityOfAWideLayerKeepsEveryClass) {
  TempDir t;
  const fs::path d = t.path / "run";
  make_run(d, 2, true);
  // Unit u prefers class u / 13 (classes 0-8: 13 units, class 9: 11), more strongly the
  // larger u.
  const int classes = 10, units = 128;
  std::vector<float> sel(size_t(classes * units), 0.0f);
  for (int u = 0; u < units; ++u) sel[size_t((u / 13) * units + u)] = 1.0f + 0.001f * float(u);
  write_npy<float>(d / "diagnostics" / "selectivity_0.npy", "<f4", {classes, units}, sel);
  const std::string html = render_report({load_run(d.string())}, {});
  const auto cols = heatmap_columns(html, "unit (sorted by preferred class)");
  ASSERT_EQ(cols.size(), 96u);
  const auto n = per_class_counts(cols);
  ASSERT_EQ(n.size(), 10u);
  // 9 full turns take 90 units, a tenth takes one more of classes 0-5.
  for (int c = 0; c < classes; ++c) EXPECT_EQ(n.at(c), c < 6 ? 10 : 9) << "class " << c;
  // Within a class, the units that prefer it most: class 9's last 9 of 117..127.
  for (auto [c, u] : cols) {
    if (c == 9) {
      EXPECT_GE(u, 119);
    }
  }
  EXPECT_NE(html.find("fc0: 96 of 128 units (each preferred class in turn, strongest first)"),
            std::string::npos);
  EXPECT_NE(html.find("taken from each preferred class in turn"), std::string::npos);
  // A layer that fits shows every unit, with the caption as before.
  make_run(t.path / "narrow", 2, true);
  const std::string narrow = render_report({load_run((t.path / "narrow").string())}, {});
  EXPECT_NE(narrow.find("fc0: 3 of 3 units</figcaption>"), std::string::npos);
  EXPECT_EQ(narrow.find("in turn"), std::string::npos);
}

TEST(Report, PickPerClassTakesClassesInTurn) {
  // Fits: everything, in order.
  EXPECT_EQ(pick_per_class({0, 0, 1}, 3), (std::vector<size_t>{0, 1, 2}));
  // Class 0 has 4 units, class 1 two, and two units have no class: those come after the
  // classes in each turn.
  const std::vector<int64_t> cls{-1, -1, 0, 0, 0, 0, 1, 1};
  EXPECT_EQ(pick_per_class(cls, 3), (std::vector<size_t>{0, 2, 6}));
  EXPECT_EQ(pick_per_class(cls, 2), (std::vector<size_t>{2, 6}));
  // Class 1 runs out; class 0 fills the rest.
  EXPECT_EQ(pick_per_class(cls, 7), (std::vector<size_t>{0, 1, 2, 3, 4, 6, 7}));
}

// The neuron heatmaps of the representation section showed the first 128 units of the display
// order: classes 7-9 of a 200-unit layer were missing.
TEST(Report, NeuronHeatmapOfAWideLayerKeepsEveryClass) {
  TempDir t;
  const fs::path d = t.path / "run";
  make_run(d);
  make_analysis(d);
  const int classes = 10, units = 200;
  std::vector<float> mean(size_t(units * classes), 0.0f);
  std::string order = "[", preferred = "[", sel = "[";
  for (int u = 0; u < units; ++u) {
    mean[size_t(u * classes + u / 20)] = 1.0f;
    // Display order: by class, then by selectivity (here falling with u within a class).
    order += (u ? "," : "") + std::to_string(u);
    preferred += (u ? "," : "") + std::to_string(u / 20);
    sel += (u ? "," : "") + std::to_string(1.0 - 0.01 * (u % 20));
  }
  write(d / "analysis" / "neurons_h0.json",
        R"({"split": "test", "order": )" + order + R"(], "preferred": )" + preferred +
            R"(], "selectivity": )" + sel + R"(], "top_units": [0, 20]})");
  write_npy<float>(d / "analysis" / "neurons_classmean_h0.npy", "<f4", {units, classes}, mean);
  const std::string html = render_report({load_run(d.string())}, {});
  const auto cols = heatmap_columns(html, "unit (by preferred class, then selectivity)");
  ASSERT_EQ(cols.size(), 128u);
  const auto n = per_class_counts(cols);
  ASSERT_EQ(n.size(), 10u);
  for (int c = 0; c < classes; ++c) EXPECT_EQ(n.at(c), c < 8 ? 13 : 12) << "class " << c;
  // Each class's most selective units: the first of its 20.
  for (auto [c, u] : cols) {
    EXPECT_LT(u % 20, 13) << "unit " << u;
  }
  EXPECT_NE(html.find("h0: 128 of 200 units (each preferred class in turn, most selective first)"),
            std::string::npos);
}

// A run whose last metrics.csv row is NaN ended there: its final test accuracy and loss are
// that row's, said to be NaN with the epoch, and the last finite value names its own epoch;
// an earlier epoch's number beside "5 epochs" read as the run's result.
TEST(Report, FinalMetricsAreTheLastRowsEvenWhenNaN) {
  TempDir t;
  const fs::path d = t.path / "nan";
  make_run(d);
  write(d / "metrics.csv",
        "epoch,train_loss,test_loss,train_acc,test_acc,epoch_time\n"
        "1,2.1,2.2,0.5,0.48,1.5\n2,1.2,1.3,0.7,0.66,1.5\n3,0.7,0.8,0.8,0.77,1.5\n"
        "4,0.45,0.6,0.88,0.84,1.5\n5,nan,nan,0.1,nan,1.5\n");
  make_run(t.path / "fine");
  const std::string html = render_report({load_run(d.string())}, {});
  EXPECT_NE(
      html.find("<b>nan</b><span>final test accuracy (at epoch 5; last finite 84.00% at epoch "
                "4)</span>"),
      std::string::npos);
  EXPECT_NE(html.find("<b>nan</b><span>final test loss (at epoch 5; last finite 0.6 at epoch "
                      "4)</span>"),
            std::string::npos);
  EXPECT_EQ(html.find("<b>84.00%</b><span>final test accuracy"), std::string::npos);
  EXPECT_NE(html.find("<b>5</b><span>epochs</span>"), std::string::npos);
  // A finite last row is shown as it is.
  const std::string fine = render_report({load_run((t.path / "fine").string())}, {});
  EXPECT_NE(fine.find("<b>86.00%</b><span>final test accuracy</span>"), std::string::npos);
  EXPECT_NE(fine.find("<b>0.55</b><span>final test loss</span>"), std::string::npos);
  // The comparison table: the NaN run's final cells say nan, with the epochs.
  const std::string both =
      render_report({load_run(d.string()), load_run((t.path / "fine").string())}, {});
  const size_t row = both.find(">nan</a></td>");
  ASSERT_NE(row, std::string::npos);
  const std::string cells = both.substr(row, both.find("</tr>", row) - row);
  EXPECT_EQ(cells,
            ">nan</a></td><td>5</td>"
            "<td>nan <span class=\"note\">(at epoch 5; last finite 0.45 at epoch 4)</span></td>"
            "<td>nan <span class=\"note\">(at epoch 5; last finite 0.6 at epoch 4)</span></td>"
            "<td>10.00%</td>"
            "<td>nan <span class=\"note\">(at epoch 5; last finite 84.00% at epoch 4)</span></td>"
            "<td>84.00%</td><td>7.5</td>");
}

// The figure of `svgs(html)` whose text holds `title` (empty when none does).
std::string figure_titled(const std::string& html, const std::string& title) {
  for (const std::string& s : svgs(html))
    if (s.find(title) != std::string::npos) return s;
  return "";
}

// grads.csv of the fixture's two layers over epochs 0..3: epoch 0, before training, has the
// weight norm only (no gradient, no update), as diagnostics record it; layer 1's weight gradient
// is missing at epoch 2.
void write_grads_from_epoch0(const fs::path& run) {
  std::string gr =
      "epoch,layer,weight_grad_norm,bias_grad_norm,act_grad_norm,weight_norm,update_ratio\n";
  for (int l = 0; l < 2; ++l) gr += "0," + std::to_string(l) + ",nan,nan,nan,3,nan\n";
  for (int e = 1; e <= 3; ++e)
    for (int l = 0; l < 2; ++l)
      gr += std::to_string(e) + "," + std::to_string(l) + "," +
            (e == 2 && l == 1 ? std::string("nan") : std::to_string(0.001 * (l + 1) * e)) +
            ",0.1,0.2,3,0.001\n";
  write(run / "diagnostics" / "grads.csv", gr);
}

// Epoch 0 has no gradients: it spent a curve (and the first colour of the epoch scale) on the
// weight-gradient depth profile, and a blank column on its heatmap. Epochs without a value get
// neither, a blank cell says it was not measured (it said nan), and the weight norm, measured
// at epoch 0, keeps its curve.
TEST(Report, EpochsWithoutAValueGetNoCurveOrColumn) {
  TempDir t;
  const fs::path d = t.path / "run";
  make_run(d, 2, true);
  write_grads_from_epoch0(d);
  const std::string html = render_report({load_run(d.string())}, {});
  const std::string profile = figure_titled(html, "Weight-gradient norm by depth");
  ASSERT_FALSE(profile.empty());
  EXPECT_EQ(profile.find("epoch 0"), std::string::npos);
  // Epoch 1 is the first curve: the dark end of viridis, where the colour bar starts (at 1, so
  // with no tick at 0).
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      profile, m, std::regex("<polyline class=\"series\" data-series=\"epoch 1\"[^>]*>")));
  EXPECT_EQ(attr(m[0], "stroke"), "#440154");
  const std::string bar = profile.substr(profile.find("<g class=\"colorbar\">"));
  EXPECT_EQ(bar.find(">0</text>"), std::string::npos) << bar;
  auto pts = invert_series(profile, "epoch 3");
  ASSERT_EQ(pts.size(), 2u);
  for (int l = 0; l < 2; ++l) EXPECT_NEAR(pts[l].second / (0.003 * (l + 1)), 1.0, 1e-3);
  const std::string heat = figure_titled(html, "Weight-gradient norm (layer × epoch)");
  ASSERT_FALSE(heat.empty());
  EXPECT_EQ(heat.find(", epoch 0: "), std::string::npos) << heat;
  EXPECT_NE(heat.find("fc0, epoch 1: 0.001</title>"), std::string::npos) << heat;
  EXPECT_NE(heat.find("fc1, epoch 2: not measured</title>"), std::string::npos) << heat;
  EXPECT_EQ(count(heat, "<rect class=\"cell\""), 2 * 3 - 1);
  EXPECT_NE(
      figure_titled(html, "Activation-gradient norm by depth").find("data-series=\"epoch 1\""),
      std::string::npos);
  EXPECT_EQ(figure_titled(html, "Activation-gradient norm by depth").find("epoch 0"),
            std::string::npos);
  EXPECT_NE(figure_titled(html, "Weight norm by depth").find("data-series=\"epoch 0\""),
            std::string::npos);
}

// A run stopped before its first epoch ended has config.json and the diagnostics of epoch 0 (no
// gradient yet), and no metrics.csv; one that diverged in its first epoch has a metrics.csv
// without rows. The report of either is written, says that no epoch finished, and prints no nan
// and no empty figure, alone or beside a finished run.
TEST(Report, ARunWithoutAFinishedEpochSaysSo) {
  TempDir t;
  const fs::path d = t.path / "early", g = d / "diagnostics";
  make_run(d, 2, true);
  for (const char* f : {"metrics.csv", "per_class.csv", "confusion.csv", "misclassified.csv",
                        "misclassified_images.npy", "dead_units.json"})
    fs::remove(d / f);
  write(g / "layers.json",
        R"({"layers": [{"name": "fc0", "kind": "linear", "in": 4, "out": 8, "activation": "relu"},
      {"name": "fc1", "kind": "linear", "in": 8, "out": 3, "activation": "relu"}], "epochs": [0]})");
  write(g / "activations.csv",
        "epoch,layer,kind,class,mean,std,min,max\n0,0,post,-1,0.1,0.5,0,1\n"
        "0,1,post,-1,0.2,0.4,0,1\n");
  write(g / "units.csv", "epoch,layer,dead_fraction,saturated_fraction\n0,0,0,nan\n0,1,0.25,nan\n");
  write(g / "grads.csv",
        "epoch,layer,weight_grad_norm,bias_grad_norm,act_grad_norm,weight_norm,update_ratio\n"
        "0,0,nan,nan,nan,3,nan\n0,1,nan,nan,nan,2,nan\n");
  for (int l = 0; l < 2; ++l)
    for (std::string kind : {"pre", "post"})
      write_npy<int64_t>(g / ("hist_" + std::to_string(l) + "_" + kind + ".npy"), "<i8", {1, 4},
                         {1, 2, 3, 4});
  make_run(t.path / "fine");
  const std::string out = (t.path / "r.html").string();
  auto report = [&](const std::vector<std::string>& dirs) {
    EXPECT_EQ(message_of([&] { write_report(dirs, out, {}); }), "(no exception)");
    const std::string html = read(out);
    EXPECT_NE(html.find("<b>no epoch finished yet</b>"), std::string::npos);
    for (const char* word : {"nan", "no data"})
      EXPECT_EQ(html.find(word), std::string::npos) << word;
    return html;
  };
  std::string html = report({d.string()});
  EXPECT_NE(html.find("no metrics.csv"), std::string::npos);
  EXPECT_NE(html.find("grads.csv has no weight-gradient norm yet"), std::string::npos);
  EXPECT_EQ(html.find("Training curves"), std::string::npos);
  EXPECT_NE(html.find("Weight norm by depth"), std::string::npos);  // measured at epoch 0
  write(d / "metrics.csv",
        "epoch,train_loss,test_loss,train_acc,test_acc,epoch_time,act_mean_0,act_std_0,"
        "grad_norm_0,act_mean_1,act_std_1,grad_norm_1\n");
  html = report({d.string()});
  EXPECT_EQ(html.find("Per-layer summary from metrics.csv"), std::string::npos);
  html = report({d.string(), (t.path / "fine").string()});
  EXPECT_NE(html.find(">early</a></td><td>0</td><td class=\"l note\" colspan=\"6\">no epoch "
                      "finished yet</td></tr>"),
            std::string::npos);
  EXPECT_NE(html.find(">fine</a></td><td>5</td><td>0.31</td><td>0.55</td><td>91.00%</td>"
                      "<td>86.00%</td><td>86.00%</td><td>7.5</td></tr>"),
            std::string::npos);
  // Rows without a finite test accuracy have no best epoch to name.
  write(d / "metrics.csv",
        "epoch,train_loss,test_loss,train_acc,test_acc,epoch_time\n1,nan,nan,nan,nan,1.5\n");
  html = render_report({load_run(d.string())}, {});
  EXPECT_NE(html.find("<b>—</b><span>best test accuracy (no finite value)</span>"),
            std::string::npos);
  EXPECT_EQ(html.find("epoch nan"), std::string::npos);
  // A directory with neither metrics.csv nor config.json is not a run.
  fs::remove(d / "metrics.csv");
  fs::remove(d / "config.json");
  EXPECT_EQ(message_of([&] { load_run(d.string()); }),
            "run directory '" + d.string() + "' has no metrics.csv");
}

// A t-SNE or PCA file that leaves a number out (null, as NaN is written) had it printed as nan,
// in the caption ("KL nan") and on the axes ("PC 1 (nan%)"): it is left out.
TEST(Report, NumbersAnAnalysisFileLeavesOutAreNotPrinted) {
  TempDir t;
  const fs::path d = t.path / "run";
  make_run(d);
  make_analysis(d);
  write(d / "analysis" / "tsne_h0.json",
        R"({"method": "exact", "kl_divergence": null, "seconds": 2})");
  write(d / "analysis" / "pca_h0.json",
        R"({"layer": "h0", "explained_variance_ratio": [null, 0.3, 0.1]})");
  const std::string html = render_report({load_run(d.string())}, {});
  EXPECT_NE(html.find("h0, 4 examples, exact, 2 s<"), std::string::npos);
  EXPECT_NE(html.find(">PC 1</text>"), std::string::npos);
  EXPECT_NE(html.find(">PC 2 (30%)</text>"), std::string::npos);
  EXPECT_EQ(html.find("nan"), std::string::npos);
}

// units.csv has NaN for a fraction its layer's activation does not have (dead units for tanh
// and sigmoid, saturated ones for the ReLU family); the unit-list table printed those as 0,
// and a tanh run's dead-unit heatmap was an empty grid.
TEST(Report, UnitsNotMeasuredForTheActivationAreNotShownAsZero) {
  TempDir t;
  auto make = [&](const std::string& name, const std::string& activation, const char* dead,
                  const char* sat) {
    const fs::path d = t.path / name;
    make_run(d, 2, true);
    const fs::path g = d / "diagnostics";
    write(g / "layers.json",
          R"({"layers": [{"name": "fc0", "kind": "linear", "in": 4, "out": 8, "activation": ")" +
              activation +
              R"("}, {"name": "fc1", "kind": "linear", "in": 8, "out": 3, "activation": ")" +
              activation + R"("}], "epochs": [1, 2, 3]})");
    std::string u = "epoch,layer,dead_fraction,saturated_fraction\n";
    for (int e = 1; e <= 3; ++e)
      for (int l = 0; l < 2; ++l)
        u += std::to_string(e) + "," + std::to_string(l) + "," + dead + "," + sat + "\n";
    write(g / "units.csv", u);
    const bool relu = std::string(dead) != "nan", tanh = std::string(sat) != "nan";
    write(g / "dead_units.json",
          std::string(R"({"epoch": 3, "layers": )") + (relu ? "[[1, 4], [2]]" : "[[], []]") + "}");
    write(g / "saturated_units.json",
          std::string(R"({"epoch": 3, "layers": )") + (tanh ? "[[0, 5], [1]]" : "[[], []]") + "}");
    return render_report({load_run(d.string())}, {});
  };
  const std::string tanh = make("tanh", "tanh", "nan", "0.25");
  EXPECT_NE(tanh.find("<td class=\"l\">fc0</td><td>n/a</td><td class=\"l\"></td><td>2</td><td "
                      "class=\"l\">0 5</td>"),
            std::string::npos);
  EXPECT_NE(tanh.find("n/a: not measured for the layer's activation"), std::string::npos);
  EXPECT_EQ(tanh.find("Dead units (layer × epoch)"), std::string::npos);
  EXPECT_NE(tanh.find("Saturated units (layer × epoch)"), std::string::npos);

  const std::string relu = make("relu", "relu", "0.25", "nan");
  EXPECT_NE(relu.find("<td class=\"l\">fc0</td><td>2</td><td class=\"l\">1 4</td><td>n/a</td><td "
                      "class=\"l\"></td>"),
            std::string::npos);
  EXPECT_NE(relu.find("Dead units (layer × epoch)"), std::string::npos);
  EXPECT_EQ(relu.find("Saturated units (layer × epoch)"), std::string::npos);

  // Neither measured (an identity activation): no empty heatmap, a note instead.
  const std::string none = make("identity", "identity", "nan", "nan");
  EXPECT_EQ(none.find("units (layer × epoch)"), std::string::npos);
  EXPECT_NE(none.find("No layer has dead or saturated units measured"), std::string::npos);
  EXPECT_EQ(count(none, "<td>n/a</td>"), 4);
}

// The augmentation and neuron captions said "test image(s)" whatever split the analysis drew
// from; augment.json and neurons_<layer>.json record it.
TEST(Report, RepresentationCaptionsNameTheRecordedSplit) {
  TempDir t;
  const fs::path d = t.path / "run";
  auto render = [&](const std::string& split_key) {
    fs::remove_all(d);
    make_run(d);
    make_analysis(d);
    const fs::path a = d / "analysis";
    write(a / "augment.json", R"({)" + split_key + R"("index": 3, "label": 1, "augmentations": 2,
        "reference_examples": 4, "layers": [{"name": "h0", "mean_ratio": 0.5, "median_ratio": 0.4}]})");
    write_npy<uint8_t>(a / "augment_images.npy", "|u1", {2, 1, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
    write(a / "neurons_h0.json", R"({)" + split_key + R"("layer": "h0", "order": [2, 0, 1, 3],
        "preferred": [0, 1, 2, -1], "selectivity": [0.5, null, 0.25, 0], "top_units": [2, 0]})");
    const std::string html = render_report({load_run(d.string())}, {});
    return html.substr(html.find("id=\"representations\""));
  };
  const std::string train = render(R"("split": "train", )");
  EXPECT_NE(train.find("Image 3 of the train split (class 1) and its first augmentations"),
            std::string::npos);
  EXPECT_NE(train.find("variance over 4 images of the train split;"), std::string::npos);
  EXPECT_NE(train.find("over the images of each class (rows) of the train split,"),
            std::string::npos);
  EXPECT_NE(train.find("h0: the 1 images of the train split that activate"), std::string::npos);
  for (const char* wrong : {"Test image", "test image", "test split"})
    EXPECT_EQ(train.find(wrong), std::string::npos) << wrong;
  const std::string test = render(R"("split": "test", )");
  EXPECT_NE(test.find("Image 3 of the test split (class 1)"), std::string::npos);
  EXPECT_EQ(test.find("train"), std::string::npos);
  // Files that do not record a split name none.
  const std::string unknown = render("");
  EXPECT_NE(unknown.find("Image 3 (class 1)"), std::string::npos);
  EXPECT_EQ(unknown.find(" split"), std::string::npos);
  // A split that is neither is refused, naming the file.
  fs::remove_all(d);
  make_run(d);
  make_analysis(d);
  write(d / "analysis" / "augment.json", R"({"split": "valid", "layers": []})");
  const std::string msg = message_of([&] { render_report({load_run(d.string())}, {}); });
  EXPECT_NE(msg.find("augment.json: \"split\" must be \"train\" or \"test\", got \"valid\""),
            std::string::npos)
      << msg;
}

TEST(ReportCommand, WritesDefaultOutputAndReportsErrorsInOneLine) {
  TempDir t;
  make_run(t.path / "run", 3, true);  // per-class statistics of class 3
  make_run(t.path / "plain");
  std::string cmd =
      std::string(GRADLENS_BINARY) + " report " + (t.path / "run").string() + " --classes 3 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_TRUE(fs::exists(t.path / "run" / "report.html"));
  // Errors: one line naming what was wrong, non-zero exit.
  auto error_of = [&](const std::string& args) {
    std::string bad = std::string(GRADLENS_BINARY) + " report " + args + " 2>&1";
    FILE* f = popen(bad.c_str(), "r");
    EXPECT_NE(f, nullptr);
    std::string out;
    char buf[256];
    while (f && fgets(buf, sizeof buf, f)) out += buf;
    int rc = f ? pclose(f) : 0;
    EXPECT_NE(rc, 0) << args;
    EXPECT_EQ(count(out, "\n"), 1) << out;
    return out;
  };
  std::string out = error_of((t.path / "missing").string());
  EXPECT_NE(out.find("missing' does not exist"), std::string::npos) << out;
  // A class the run has no statistics of, or a run without per-class statistics at all, is
  // named instead of leaving the plots out silently.
  out = error_of((t.path / "run").string() + " --classes 3,7");
  EXPECT_NE(out.find("class 7 is not in the per-class statistics of " + (t.path / "run").string()),
            std::string::npos)
      << out;
  out = error_of((t.path / "plain").string() + " --classes 3");
  EXPECT_NE(out.find("no run here has per-class statistics"), std::string::npos) << out;
  // --out naming one of the run's own files once replaced it with HTML.
  const std::string metrics = read((t.path / "run" / "metrics.csv"));
  out = error_of((t.path / "run").string() + " --out " + (t.path / "run" / "metrics.csv").string());
  EXPECT_NE(out.find("metrics.csv: the report is HTML; give a file name ending in .html"),
            std::string::npos)
      << out;
  EXPECT_EQ(read(t.path / "run" / "metrics.csv"), metrics);
  std::string help = std::string(GRADLENS_BINARY) + " report --help > /dev/null 2>&1";
  EXPECT_EQ(std::system(help.c_str()), 0);
}

namespace {
// The edge bins of a histogram also hold what fell outside its range: the panel says how much,
// at the last epoch shown, from hist_<layer>_<kind>_outside.npy; a file of another shape is
// refused naming it.
TEST(Report, HistogramPanelsGiveTheShareOutsideTheRange) {
  TempDir t;
  make_run(t.path / "clip", 3, true);
  const fs::path g = t.path / "clip" / "diagnostics";
  write_layer0_histogram(g, 0.0, [](int b) { return b == 31 ? 300 : 10; });
  // The last row: 244 values above the range (counted in bin 31), none below.
  write_npy<int64_t>(g / "hist_0_post_outside.npy", "<i8", {3, 3},
                     std::vector<int64_t>{0, 0, 0, 0, 0, 0, 0, 244, 0});
  RunData run = load_run((t.path / "clip").string());
  ASSERT_FALSE(run.diagnostics->histograms.empty());
  const std::string html = render_report({run}, {});
  // 244 of the last row's 31 * 10 + 300 = 610 values: 40%.
  EXPECT_NE(html.find(": 40% above it (in the edge bins)"), std::string::npos);
  EXPECT_EQ(html.find("below the range"), std::string::npos);
  write_npy<int64_t>(g / "hist_0_post_outside.npy", "<i8", {3, 2},
                     std::vector<int64_t>{0, 0, 0, 0, 0, 0});
  try {
    load_run((t.path / "clip").string());
    ADD_FAILURE() << "a [3, 2] outside file was taken";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("hist_0_post_outside.npy"), std::string::npos) << e.what();
  }
}
}  // namespace
