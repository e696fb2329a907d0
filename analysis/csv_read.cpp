// csv_read.cpp: a strict, quote-free CSV reader; strictness is the point, since a silently
// misparsed metrics file would draw a wrong but plausible figure.
#include "analysis/csv_read.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "engine/core.h"
#include "engine/io/fs.h"

namespace gl::analysis {
namespace {

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r')) ++a;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r')) --b;
  return s.substr(a, b - a);
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t comma = line.find(',', start);
    out.push_back(trim(line.substr(start, comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

int CsvTable::column(const std::string& name) const {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return static_cast<int>(i);
  return -1;
}

int CsvTable::require(const std::string& name) const {
  int c = column(name);
  if (c < 0) throw std::runtime_error(path + ": missing column '" + name + "'");
  return c;
}

double CsvTable::number(size_t row, int col) const {
  const std::string& s = rows.at(row).at(static_cast<size_t>(col));
  if (s.empty() || s == "nan" || s == "NaN" || s == "-nan")
    return std::numeric_limits<double>::quiet_NaN();
  const char* begin = s.c_str();
  char* end = nullptr;
  double v = std::strtod(begin, &end);
  // end must reach the cell's end, not merely a NUL inside it ("1\0x" is not 1).
  if (end == begin || end != begin + s.size())
    throw std::runtime_error(path + ":" + std::to_string(line_numbers.at(row)) + ": column '" +
                             message_text(header.at(static_cast<size_t>(col))) + "': '" +
                             message_text(s) + "' is not a number");
  return v;
}

CsvTable read_csv(const std::string& path) {
  const std::vector<uint8_t> bytes = io::read_file(path);  // names the path (missing, a directory)
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  CsvTable t;
  t.path = path;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (trim(line).empty()) continue;
    auto fields = split(line);
    if (t.header.empty()) {
      t.header = std::move(fields);
      continue;
    }
    if (fields.size() != t.header.size())
      throw std::runtime_error(path + ":" + std::to_string(lineno) + ": expected " +
                               std::to_string(t.header.size()) + " fields, got " +
                               std::to_string(fields.size()));
    t.rows.push_back(std::move(fields));
    t.line_numbers.push_back(lineno);
  }
  if (t.header.empty()) throw std::runtime_error(path + ":1: empty file (no header)");
  return t;
}

}  // namespace gl::analysis
