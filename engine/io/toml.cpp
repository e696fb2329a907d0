// toml.cpp: a recursive-descent TOML v1.0 reader building JSON. The document's tables are built
// as a tree first, each table knowing how it came to be (named by a header, made by dotted keys,
// or only a parent of a header), because that decides whether a later header or dotted key may
// add to it; the finished tree becomes JSON.
#include "engine/io/toml.h"

#include <fmt/core.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "engine/core.h"

namespace gl::io {
namespace {

using ojson = nlohmann::ordered_json;

// Tables (of headers and dotted keys), arrays and inline tables nested deeper than this below the
// document are refused, before a recursion (the parser's, the table tree's, the JSON's) could
// exhaust the stack.
constexpr int kMaxNesting = 128;

struct Table {
  // Implicit: only a parent of a header ([a.b] makes a), which a later [a] may still define.
  // Header: defined by its own header; no second header, and no dotted key, may add to it.
  // Dotted: made by a dotted key (a.b = 1 makes a): more dotted keys of the same table may add
  // to it, and headers may add sub-tables, but no header may define it.
  enum class Origin { Implicit, Header, Dotted };
  Origin origin;
  size_t at;  // offset of what made or defined it

  struct Entry {
    std::string key;
    size_t at;                     // offset of the key that made the entry
    std::unique_ptr<Table> table;  // null for a value
    ojson value;
  };
  std::vector<Entry> entries;

  Entry* find(const std::string& key) {
    for (auto& e : entries)
      if (e.key == key) return &e;
    return nullptr;
  }
  Table& add_table(const std::string& key, size_t key_at, Origin o, size_t made_at) {
    entries.push_back({key, key_at, std::make_unique<Table>(Table{o, made_at, {}}), ojson()});
    return *entries.back().table;
  }
};

ojson to_json(const Table& t) {
  ojson j = ojson::object();
  for (const auto& e : t.entries) j[e.key] = e.table ? to_json(*e.table) : e.value;
  return j;
}

bool is_bare_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

int digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 99;
}

// An unquoted value runs over these: numbers, true/false, inf/nan, and what a date or time or a
// forgotten quote would spell.
bool is_bare_value_char(char c) {
  return is_bare_key_char(c) || c == '.' || c == '+' || c == ':';
}

struct Key {
  std::string name;
  size_t at;
};

// "a.b.\"c d\"": the first `n` parts of a dotted key, bare where they can be.
std::string key_text(const std::vector<Key>& keys, size_t n) {
  std::string out;
  for (size_t k = 0; k < n; ++k) {
    const std::string& name = keys[k].name;
    bool bare = !name.empty();
    for (char c : name) bare = bare && is_bare_key_char(c);
    out += (k ? "." : "") + (bare ? name : ojson(name).dump());
  }
  return out;
}

class Parser {
 public:
  Parser(std::string_view text, const std::string& source) : s_(text), source_(source) {}

  ojson document() {
    check_utf8();
    if (starts_with("\xEF\xBB\xBF")) i_ = 3;
    Table root{Table::Origin::Header, 0, {}};
    Table* current = &root;
    for (;;) {
      skip_ws();
      if (eof()) break;
      if (peek() == '[') {
        current = &header(root);
        end_of_line("the table header");
      } else if (peek() != '#' && peek() != '\n' && peek() != '\r') {
        const std::string key = keyval(*current);
        end_of_line("the value of " + key);
      } else {
        end_of_line("");
      }
    }
    return to_json(root);
  }

 private:
  std::string_view s_;
  const std::string& source_;
  size_t i_ = 0;
  // How deep below the document the value being read is: the tables of the current header and
  // key, and the arrays and inline tables open around it.
  size_t level_ = 0;

  bool eof() const { return i_ >= s_.size(); }
  char peek(size_t ahead = 0) const { return i_ + ahead < s_.size() ? s_[i_ + ahead] : '\0'; }
  bool starts_with(std::string_view t) const { return s_.substr(i_).starts_with(t); }

  // "LINE:COLUMN" of an offset, columns in characters.
  std::string where(size_t at) const {
    size_t line = 1, column = 1;
    // A byte order mark opens the file without being one of its characters.
    for (size_t k = s_.starts_with("\xEF\xBB\xBF") ? 3 : 0; k < at && k < s_.size(); ++k) {
      if (s_[k] == '\n') {
        ++line;
        column = 1;
      } else if ((static_cast<unsigned char>(s_[k]) & 0xC0) != 0x80) {
        ++column;
      }
    }
    return fmt::format("{}:{}", line, column);
  }
  [[noreturn]] void fail(size_t at, const std::string& what) const {
    throw Error(fmt::format("{}:{}: {}", source_, where(at), what));
  }
  // The character at `at`, for a message.
  std::string shown(size_t at) const {
    if (at >= s_.size()) return "the end of the file";
    const auto c = static_cast<unsigned char>(s_[at]);
    if (c == '\n' || (c == '\r' && at + 1 < s_.size() && s_[at + 1] == '\n'))
      return "the end of the line";
    if (c < 0x20 || c == 0x7F) return fmt::format("the control character U+{:04X}", int(c));
    size_t n = 1;
    while (at + n < s_.size() && (static_cast<unsigned char>(s_[at + n]) & 0xC0) == 0x80) ++n;
    return fmt::format("'{}'", s_.substr(at, n));
  }

  // TOML is UTF-8: a malformed sequence, an overlong form or a surrogate is refused.
  void check_utf8() const {
    for (size_t k = 0; k < s_.size();) {
      const auto c = static_cast<unsigned char>(s_[k]);
      size_t n = 0;
      uint32_t cp = 0;
      if (c < 0x80) {
        ++k;
        continue;
      } else if (c >= 0xC2 && c <= 0xDF) {
        n = 1, cp = c & 0x1F;
      } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2, cp = c & 0x0F;
      } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3, cp = c & 0x07;
      } else {
        fail(k, fmt::format("invalid UTF-8 (byte 0x{:02X})", int(c)));
      }
      for (size_t m = 1; m <= n; ++m) {
        const auto d = k + m < s_.size() ? static_cast<unsigned char>(s_[k + m]) : 0;
        if ((d & 0xC0) != 0x80) fail(k, fmt::format("invalid UTF-8 (byte 0x{:02X})", int(c)));
        cp = (cp << 6) | (d & 0x3F);
      }
      if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
          (cp >= 0xD800 && cp <= 0xDFFF))
        fail(k, fmt::format("invalid UTF-8 (byte 0x{:02X})", int(c)));
      k += n + 1;
    }
  }

  // Control characters other than tab may not appear raw in comments and strings.
  void check_char(const char* in) const {
    const auto c = static_cast<unsigned char>(peek());
    if ((c < 0x20 && c != '\t') || c == 0x7F)
      fail(i_, fmt::format("the control character U+{:04X} is not allowed in {}", int(c), in));
  }

  void skip_ws() {
    while (peek() == ' ' || peek() == '\t') ++i_;
  }
  // Consumes a newline (LF or CRLF).
  bool newline() {
    if (peek() == '\n') {
      ++i_;
      return true;
    }
    if (peek() == '\r' && peek(1) == '\n') {
      i_ += 2;
      return true;
    }
    return false;
  }
  bool at_newline() const { return peek() == '\n' || (peek() == '\r' && peek(1) == '\n'); }
  void skip_comment() {
    ++i_;  // '#'
    while (!eof() && !at_newline()) {
      check_char("a comment");
      ++i_;
    }
  }
  // Whitespace, newlines and comments, as between the elements of an array.
  void skip_blank() {
    for (;;) {
      skip_ws();
      if (peek() == '#')
        skip_comment();
      else if (!newline())
        return;
    }
  }
  // After an expression: only a comment may follow on its line.
  void end_of_line(const std::string& after) {
    skip_ws();
    if (peek() == '#') skip_comment();
    if (eof() || newline()) return;
    fail(i_, fmt::format("expected the end of the line{}, got {}",
                         after.empty() ? "" : " after " + after, shown(i_)));
  }

  // ---------------------------------------------------------------- keys and tables
  Key simple_key() {
    const size_t at = i_;
    if (peek() == '"' || peek() == '\'') {
      if (starts_with("\"\"\"") || starts_with("'''"))
        fail(at, "a key cannot be a multi-line string");
      return {peek() == '"' ? basic_string() : literal_string(), at};
    }
    while (is_bare_key_char(peek())) ++i_;
    if (i_ == at)
      fail(at, fmt::format("expected a key (letters, digits, '_', '-', or a quoted string), got {}",
                           shown(at)));
    return {std::string(s_.substr(at, i_ - at)), at};
  }
  std::vector<Key> key() {
    std::vector<Key> keys;
    for (;;) {
      keys.push_back(simple_key());
      skip_ws();
      if (peek() != '.') return keys;
      ++i_;
      skip_ws();
    }
  }

  // [a.b.c]: the table it defines, which the following key/value pairs fill.
  Table& header(Table& root) {
    const size_t open = i_++;
    if (peek() == '[')
      fail(open,
           "arrays of tables ([[name]]) are not supported; write name = [{...}, {...}] with "
           "inline tables");
    skip_ws();
    const std::vector<Key> keys = key();
    if (peek() != ']')
      fail(i_, fmt::format("expected ']' to close the table header, got {}", shown(i_)));
    ++i_;
    level_ = 0;
    check_key_nesting(keys, keys.size());
    level_ = keys.size();
    const std::string name = "[" + key_text(keys, keys.size()) + "]";
    Table* t = &root;
    for (size_t k = 0; k < keys.size(); ++k) {
      const bool last = k + 1 == keys.size();
      Table::Entry* e = t->find(keys[k].name);
      if (e == nullptr) {
        t = &t->add_table(keys[k].name, keys[k].at,
                          last ? Table::Origin::Header : Table::Origin::Implicit, open);
        continue;
      }
      if (!e->table)
        fail(keys[k].at,
             fmt::format("table {}: {} already holds a value (given at {}), not a table", name,
                         key_text(keys, k + 1), where(e->at)));
      t = e->table.get();
      if (!last) continue;
      if (t->origin == Table::Origin::Header)
        fail(open, fmt::format("table {} is defined twice (first at {})", name, where(t->at)));
      if (t->origin == Table::Origin::Dotted)
        fail(open, fmt::format("table {} was already defined by dotted keys (at {}); a header "
                               "cannot define it again",
                               name, where(t->at)));
      t->origin = Table::Origin::Header;
      t->at = open;
    }
    return *t;
  }

  // KEY = VALUE into `table`; returns the key as written, for messages.
  std::string keyval(Table& table) {
    const std::vector<Key> keys = key();
    const std::string name = key_text(keys, keys.size());
    if (peek() != '=')
      fail(i_, fmt::format("expected '=' after the key {}, got {}", name, shown(i_)));
    ++i_;
    skip_ws();
    check_key_nesting(keys, keys.size() - 1);
    Table* t = &table;
    for (size_t k = 0; k + 1 < keys.size(); ++k) {
      Table::Entry* e = t->find(keys[k].name);
      if (e == nullptr) {
        t = &t->add_table(keys[k].name, keys[k].at, Table::Origin::Dotted, keys[k].at);
        continue;
      }
      if (!e->table)
        fail(keys[k].at, fmt::format("{} already holds a value (given at {}), not a table",
                                     key_text(keys, k + 1), where(e->at)));
      t = e->table.get();
      if (t->origin == Table::Origin::Header)
        fail(keys[k].at, fmt::format("table {} is defined by its header (at {}); add its keys "
                                     "under that header",
                                     key_text(keys, k + 1), where(t->at)));
      if (t->origin == Table::Origin::Implicit) {
        t->origin = Table::Origin::Dotted;
        t->at = keys[k].at;
      }
    }
    const Key& last = keys.back();
    if (const Table::Entry* e = t->find(last.name))
      fail(last.at, e->table ? fmt::format("key {} is already a table (made at {})", name,
                                           where(e->table->at))
                             : fmt::format("key {} is given twice (first at {}); give it once",
                                           name, where(e->at)));
    const size_t outer = level_;
    level_ += keys.size() - 1;
    ojson v = value();
    level_ = outer;
    t->entries.push_back({last.name, last.at, nullptr, std::move(v)});
    return name;
  }

  // The first `tables` parts of `keys` make or open tables, one level each below `level_`.
  void check_key_nesting(const std::vector<Key>& keys, size_t tables) const {
    if (level_ + tables > kMaxNesting) fail(keys[kMaxNesting - level_].at, too_deep());
  }
  static std::string too_deep() {
    return fmt::format("tables, arrays and inline tables nested more than {} deep", kMaxNesting);
  }

  // ---------------------------------------------------------------- values
  ojson value() {
    if (starts_with("\"\"\"")) return multi_line_string('"');
    if (starts_with("'''")) return multi_line_string('\'');
    if (peek() == '"') return basic_string();
    if (peek() == '\'') return literal_string();
    if (peek() == '[') return array();
    if (peek() == '{') return inline_table();
    return bare_value();
  }

  void nest(size_t open) {
    if (++level_ > kMaxNesting) fail(open, too_deep());
  }

  ojson array() {
    const size_t open = i_++;
    nest(open);
    ojson out = ojson::array();
    for (;;) {
      skip_blank();
      if (eof()) break;
      if (peek() == ']') {
        ++i_;
        --level_;
        return out;
      }
      out.push_back(value());
      skip_blank();
      if (peek() == ',') {
        ++i_;
      } else if (peek() != ']' && !eof()) {
        fail(i_, fmt::format("expected ',' or ']' after an element of the array opened at {}, "
                             "got {}",
                             where(open), shown(i_)));
      }
    }
    fail(open, "unterminated array: no closing ']'");
  }

  ojson inline_table() {
    const size_t open = i_++;
    nest(open);
    Table t{Table::Origin::Dotted, open, {}};
    auto on_its_line = [&] {
      if (eof() || at_newline() || peek() == '#')
        fail(i_, fmt::format("expected '}}' to close the inline table opened at {} (an inline "
                             "table stays on one line), got {}",
                             where(open), peek() == '#' ? "a comment" : shown(i_)));
    };
    skip_ws();
    if (peek() != '}') {
      for (;;) {
        skip_ws();
        on_its_line();
        if (peek() == '}') fail(i_, "an inline table takes no ',' after its last value");
        keyval(t);
        skip_ws();
        if (peek() == '}') break;
        on_its_line();
        if (peek() != ',')
          fail(i_, fmt::format("expected ',' or '}}' after a value of the inline table opened at "
                               "{}, got {}",
                               where(open), shown(i_)));
        ++i_;
      }
    }
    ++i_;
    --level_;
    return to_json(t);
  }

  // \b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX, appended to `out`.
  void escape(std::string& out) {
    const size_t at = i_++;
    const char c = peek();
    const char* simple = "b\bt\tn\nf\fr\r\"\"\\\\";
    for (const char* p = simple; *p; p += 2)
      if (c == p[0]) {
        out += p[1];
        ++i_;
        return;
      }
    if (c != 'u' && c != 'U')
      fail(at, fmt::format("invalid escape: '\\' followed by {} (TOML has \\b \\t \\n \\f \\r "
                           "\\\" \\\\ \\uXXXX \\UXXXXXXXX)",
                           shown(i_)));
    const int n = c == 'u' ? 4 : 8;
    ++i_;
    uint32_t cp = 0;
    for (int k = 0; k < n; ++k, ++i_) {
      const int d = digit_value(peek());
      if (d > 15) fail(at, fmt::format("invalid escape: \\{} takes {} hexadecimal digits", c, n));
      cp = cp * 16 + uint32_t(d);
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      fail(at,
           fmt::format("invalid escape: {} is not a Unicode scalar value", s_.substr(at, i_ - at)));
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  // "..." with escapes, or '...' without, on one line.
  std::string single_line_string(char quote) {
    const size_t open = i_++;
    std::string out;
    for (;;) {
      if (eof() || at_newline())
        fail(open, fmt::format("unterminated string: no closing {} on its line (a string over "
                               "several lines opens with {}{}{})",
                               quote, quote, quote, quote));
      const char c = peek();
      if (c == quote) {
        ++i_;
        return out;
      }
      if (c == '\\' && quote == '"') {
        escape(out);
        continue;
      }
      check_char("a string");
      out += c;
      ++i_;
    }
  }
  std::string basic_string() { return single_line_string('"'); }
  std::string literal_string() { return single_line_string('\''); }

  // """...""" with escapes and line-ending backslashes, or '''...''' without; a newline right
  // after the opening delimiter is dropped.
  std::string multi_line_string(char quote) {
    const size_t open = i_;
    i_ += 3;
    newline();
    std::string out;
    while (!eof()) {
      const char c = peek();
      if (c == quote && peek(1) == quote && peek(2) == quote) {
        size_t n = 3;
        while (peek(n) == quote) ++n;
        if (n > 5)
          fail(i_, fmt::format("three {} in a row end a multi-line string; write a third one "
                               "inside as an escape",
                               quote));
        out.append(n - 3, quote);  // up to two quotes just before the closing ones
        i_ += n;
        return out;
      }
      if (c == '\\' && quote == '"') {
        size_t j = i_ + 1;
        while (j < s_.size() && (s_[j] == ' ' || s_[j] == '\t')) ++j;
        if (j < s_.size() && (s_[j] == '\n' || s_.substr(j).starts_with("\r\n"))) {
          // A line-ending backslash drops the newline and the whitespace that follows.
          i_ = j;
          for (;;) {
            skip_ws();
            if (!newline()) break;
          }
        } else {
          escape(out);
        }
        continue;
      }
      if (newline()) {
        out += '\n';
        continue;
      }
      check_char("a string");
      out += c;
      ++i_;
    }
    fail(open,
         fmt::format("unterminated multi-line string: no closing {}{}{}", quote, quote, quote));
  }

  // true, false, numbers, inf and nan.
  ojson bare_value() {
    const size_t at = i_;
    while (is_bare_value_char(peek())) ++i_;
    const std::string_view tok = s_.substr(at, i_ - at);
    if (tok == "true") return true;
    if (tok == "false") return false;
    const bool date = tok.size() >= 5 && is_digit(tok[0]) && is_digit(tok[1]) && is_digit(tok[2]) &&
                      is_digit(tok[3]) && tok[4] == '-';
    const bool time = tok.size() >= 3 && is_digit(tok[0]) && is_digit(tok[1]) && tok[2] == ':';
    if (date || time)
      fail(at,
           fmt::format("dates and times are not supported, got '{}' (write it as a string)", tok));
    if (!tok.empty() && (is_digit(tok[0]) || tok[0] == '+' || tok[0] == '-' || tok[0] == '.' ||
                         tok == "inf" || tok == "nan"))
      return number(tok, at);
    if (tok.empty())
      fail(at, fmt::format("expected a value (a string, a number, true or false, an array or an "
                           "inline table), got {}",
                           shown(at)));
    fail(at, fmt::format("expected a value (a string, a number, true or false, an array or an "
                         "inline table), got '{}' (a string is written in quotes)",
                         tok));
  }

  ojson number(std::string_view tok, size_t at) const {
    auto bad = [&](const std::string& why) {
      fail(at, fmt::format("invalid number '{}': {}", tok, why));
    };
    // The digits of `part` without its '_' separators, each of which must stand between two
    // digits.
    auto digits = [&](std::string_view part, int base, const char* what) {
      if (part.empty()) bad(fmt::format("expected digits {}", what));
      std::string out;
      for (size_t k = 0; k < part.size(); ++k) {
        if (part[k] == '_') {
          if (k == 0 || k + 1 == part.size() || part[k + 1] == '_')
            bad("each '_' must stand between two digits");
          continue;
        }
        if (digit_value(part[k]) >= base)
          bad(fmt::format("'{}' is not a {} digit", part[k],
                          base == 16  ? "hexadecimal"
                          : base == 8 ? "octal"
                          : base == 2 ? "binary"
                                      : "decimal"));
        out += part[k];
      }
      return out;
    };
    std::string_view body = tok;
    const bool signed_ = body[0] == '+' || body[0] == '-';
    const bool negative = body[0] == '-';
    if (signed_) body.remove_prefix(1);
    if (body == "inf")
      return negative ? -std::numeric_limits<double>::infinity()
                      : std::numeric_limits<double>::infinity();
    if (body == "nan") return std::numeric_limits<double>::quiet_NaN();
    const char* range =
        "outside the 64-bit integers, from -9223372036854775808 to 9223372036854775807";
    const bool prefixed =
        body.size() >= 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'o' || body[1] == 'b');
    if (prefixed) {
      if (signed_) bad("a hexadecimal, octal or binary integer takes no sign");
      const int base = body[1] == 'x' ? 16 : body[1] == 'o' ? 8 : 2;
      const std::string d = digits(body.substr(2), base, fmt::format("after 0{}", body[1]).c_str());
      uint64_t v = 0;
      const auto r = std::from_chars(d.data(), d.data() + d.size(), v, base);
      if (r.ec != std::errc() || v > uint64_t(std::numeric_limits<int64_t>::max())) bad(range);
      return v;
    }
    const size_t point = body.find_first_of(".eE");
    const std::string whole = digits(body.substr(0, point), 10, "before the fraction or exponent");
    if (whole.size() > 1 && whole[0] == '0') bad("leading zeros are not allowed");
    if (point == std::string_view::npos) {
      uint64_t v = 0;
      const auto r = std::from_chars(whole.data(), whole.data() + whole.size(), v);
      const uint64_t limit = uint64_t(std::numeric_limits<int64_t>::max()) + (negative ? 1 : 0);
      if (r.ec != std::errc() || v > limit) bad(range);
      // Like nlohmann's JSON parser: unsigned when not negative.
      if (!negative || v == 0) return v;
      return v == limit ? std::numeric_limits<int64_t>::min() : -int64_t(v);
    }
    std::string text = (negative ? "-" : "") + whole;
    std::string_view rest = body.substr(point);
    if (rest[0] == '.') {
      const size_t e = rest.find_first_of("eE");
      text += "." +
              digits(rest.substr(1, e == std::string_view::npos ? e : e - 1), 10, "after the '.'");
      rest = e == std::string_view::npos ? std::string_view() : rest.substr(e);
    }
    if (!rest.empty()) {
      rest.remove_prefix(1);  // e or E
      text += 'e';
      if (!rest.empty() && (rest[0] == '+' || rest[0] == '-')) {
        text += rest[0];
        rest.remove_prefix(1);
      }
      text += digits(rest, 10, "in the exponent");
    }
    double v = 0;
    const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
    if (r.ec == std::errc::result_out_of_range) {
      // Too small rounds to zero or a subnormal, as IEEE binary64 readers round it; too large
      // has no value.
      const double rounded = std::strtod(text.c_str(), nullptr);
      if (std::isinf(rounded)) bad("outside the range of a 64-bit float");
      return rounded;
    }
    if (r.ec != std::errc() || r.ptr != text.data() + text.size()) bad("not a number");
    return v;
  }
};

}  // namespace

nlohmann::ordered_json parse_toml(std::string_view text, const std::string& source) {
  return Parser(text, source).document();
}

}  // namespace gl::io
