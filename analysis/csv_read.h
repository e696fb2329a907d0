// csv_read.h: reads the small numeric CSV files of a run directory, with errors that name the
// file and line so a hand-edited or truncated file is easy to fix.
#pragma once
#include <string>
#include <vector>

namespace gl::analysis {

struct CsvTable {
  std::string path;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int> line_numbers;  // 1-based file line of each row

  // Index of column `name`, or -1.
  int column(const std::string& name) const;
  // Column index of `name`; throws naming the file when it is absent.
  int require(const std::string& name) const;
  // Cell as a number: empty, "nan" -> NaN; "inf"/"-inf" accepted; throws naming file:line.
  double number(size_t row, int col) const;
};

// Splits on commas (no quoting: run-directory files hold numbers and plain names), skips
// blank lines, and requires every row to have as many fields as the header.
CsvTable read_csv(const std::string& path);

}  // namespace gl::analysis
