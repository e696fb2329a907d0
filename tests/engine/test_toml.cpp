// test_toml.cpp: the TOML reader against hand-written JSON for each construct of TOML v1.0 it
// covers (keys, tables, strings, integers, floats, booleans, arrays, inline tables), and every
// error it must raise, each with its file, line and column.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "engine/core.h"
#include "engine/io/toml.h"
#include "tests/error_of.h"

using gl::io::parse_toml;
using gl::testing::error_of;
using ojson = nlohmann::ordered_json;

namespace {

// The document as JSON text, keys in the document's order.
std::string as_json(const std::string& toml) {
  return parse_toml(toml, "t.toml").dump();
}
std::string expected(const std::string& json) {
  return ojson::parse(json).dump();
}
std::string error(const std::string& toml) {
  return error_of([&] { parse_toml(toml, "t.toml"); });
}

}  // namespace

TEST(Toml, CommentsAndKeys) {
  EXPECT_EQ(as_json("# a comment\n"
                    "\n"
                    "  a = 1  # after a value\n"
                    "\"quoted key\" = 2\n"
                    "'literal \\key' = 3\n"
                    "\"\" = 4\n"
                    "dotted . key.\"with.dot\" = 5\n"
                    "bare-key_1 = 6\n"
                    "1234 = 7\r\n"
                    "\"\\u00e9\" = 8"),
            expected(R"({"a": 1, "quoted key": 2, "literal \\key": 3, "": 4,
                         "dotted": {"key": {"with.dot": 5}}, "bare-key_1": 6, "1234": 7,
                         "é": 8})"));
  EXPECT_EQ(as_json(""), "{}");
  EXPECT_EQ(as_json("\xEF\xBB\xBF# a byte order mark first\n"), "{}");
}

TEST(Toml, Tables) {
  // A header defines a table and its missing parents; a parent may be defined later, once; a
  // table made by dotted keys takes more dotted keys and sub-tables by header.
  EXPECT_EQ(as_json("top = true\n"
                    "[a.b.c]\n"
                    "x = 1\n"
                    "[a]\n"
                    "y = 2\n"
                    "[ a . d ]\n"
                    "[t]\n"
                    "p.q = 1\n"
                    "p.r = 2\n"
                    "[t.p.s]\n"
                    "z = 3\n"
                    "[\"quoted.header\"]\n"
                    "k = 'v'\n"),
            expected(R"({"top": true, "a": {"b": {"c": {"x": 1}}, "y": 2, "d": {}},
                         "t": {"p": {"q": 1, "r": 2, "s": {"z": 3}}},
                         "quoted.header": {"k": "v"}})"));
}

TEST(Toml, Strings) {
  EXPECT_EQ(as_json(R"(basic = "tab\there \"q\" back\\slash\nline \b\f\r \u00e9 \U0001F600")"),
            expected("{\"basic\": \"tab\\there \\\"q\\\" back\\\\slash\\nline \\b\\f\\r é "
                     "\xF0\x9F\x98\x80\"}"));
  EXPECT_EQ(as_json(R"(literal = 'C:\Users\no "escapes"')"),
            expected(R"({"literal": "C:\\Users\\no \"escapes\""})"));
  // The newline right after the opening delimiter is dropped; a line-ending backslash drops
  // the newline and the whitespace after it; up to two quotes stand before the closing ones.
  EXPECT_EQ(as_json("ml = \"\"\"\nfirst\n  second \\\n    joined \"quoted\" \"\"\"\"\""),
            expected(R"({"ml": "first\n  second joined \"quoted\" \"\""})"));
  EXPECT_EQ(as_json("mll = '''\r\nraw \\n\r\n 'two''''"),
            expected(R"({"mll": "raw \\n\n 'two'"})"));
  EXPECT_EQ(as_json("empty = \"\"\nalso = ''"), expected(R"({"empty": "", "also": ""})"));
  EXPECT_EQ(as_json("tab = \"a\tb\""), expected(R"({"tab": "a\tb"})"));
}

TEST(Toml, IntegersAreUnsignedUnlessNegativeAsInJson) {
  const ojson j = parse_toml(
      "zero = 0\nplus = +17\nminus = -42\nsep = 1_000_000\nhex = 0xDEAD_beef\noct = 0o755\n"
      "bin = 0b1101\nmax = 9223372036854775807\nmin = -9223372036854775808\nnzero = -0",
      "t.toml");
  EXPECT_EQ(j.dump(), expected(R"({"zero": 0, "plus": 17, "minus": -42, "sep": 1000000,
      "hex": 3735928559, "oct": 493, "bin": 13, "max": 9223372036854775807,
      "min": -9223372036854775808, "nzero": 0})"));
  // The same kinds nlohmann gives the JSON text, so a TOML file and its JSON form are equal
  // documents.
  for (const char* k : {"zero", "plus", "sep", "hex", "max", "nzero"})
    EXPECT_TRUE(j[k].is_number_unsigned()) << k;
  for (const char* k : {"minus", "min"}) EXPECT_TRUE(j[k].is_number_integer()) << k;
  EXPECT_FALSE(j["minus"].is_number_unsigned());
}

TEST(Toml, Floats) {
  const ojson j = parse_toml(
      "a = 1.5\nb = -0.01\nc = 5e+22\nd = 1e06\ne = -2E-2\nf = 6.626e-34\ng = 224_617.445_991\n"
      "h = 0.0\ni = +1.0\nj = 1e1_0",
      "t.toml");
  EXPECT_EQ(j.dump(), expected(R"({"a": 1.5, "b": -0.01, "c": 5e22, "d": 1e6, "e": -0.02,
      "f": 6.626e-34, "g": 224617.445991, "h": 0.0, "i": 1.0, "j": 1e10})"));
  for (auto& [k, v] : j.items()) EXPECT_TRUE(v.is_number_float()) << k;
  const ojson s = parse_toml("p = inf\nq = +inf\nr = -inf\nn = nan\nm = -nan\no = +nan", "t.toml");
  EXPECT_EQ(s["p"].get<double>(), INFINITY);
  EXPECT_EQ(s["q"].get<double>(), INFINITY);
  EXPECT_EQ(s["r"].get<double>(), -INFINITY);
  for (const char* k : {"n", "m", "o"}) EXPECT_TRUE(std::isnan(s[k].get<double>())) << k;
  // Below the smallest subnormal rounds to zero, as binary64 readers round it; a subnormal
  // stays one.
  const ojson u = parse_toml("z = 1e-400\nm = -1e-400\ns = 4e-320", "t.toml");
  EXPECT_EQ(u["z"].get<double>(), 0.0);
  EXPECT_TRUE(std::signbit(u["m"].get<double>()));
  EXPECT_EQ(u["s"].get<double>(), 4e-320);
}

TEST(Toml, Booleans) {
  EXPECT_EQ(as_json("t = true\nf = false"), expected(R"({"t": true, "f": false})"));
}

TEST(Toml, Arrays) {
  EXPECT_EQ(as_json("empty = []\n"
                    "ints = [1, 2, 3]\n"
                    "mixed = [\"a\", 1, 2.5, true, [], {x = 1}]\n"
                    "nested = [[1, 2], ['a', [\"b\"]]]\n"
                    "lines = [  # a comment after the bracket\n"
                    "  1,\n"
                    "  # a comment line\n"
                    "  2,   # a trailing comma\n"
                    "]\n"
                    "crlf = [\r\n3\r\n]"),
            expected(R"({"empty": [], "ints": [1, 2, 3], "mixed": ["a", 1, 2.5, true, [], {"x": 1}],
                         "nested": [[1, 2], ["a", ["b"]]], "lines": [1, 2], "crlf": [3]})"));
}

TEST(Toml, InlineTables) {
  EXPECT_EQ(as_json("it = { a = 1, b = \"x\" }\n"
                    "empty = {}\n"
                    "nested = {inner = {deep = true}, list = [1,\n 2]}\n"
                    "dotted = { p.q = 1, p.r = 2 }\n"
                    "[t]\n"
                    "init = {name = \"he_normal\", factor = 6}"),
            expected(R"({"it": {"a": 1, "b": "x"}, "empty": {},
                         "nested": {"inner": {"deep": true}, "list": [1, 2]},
                         "dotted": {"p": {"q": 1, "r": 2}},
                         "t": {"init": {"name": "he_normal", "factor": 6}}})"));
}

// Every error names the file, the line and the column (in characters) of what is wrong.
TEST(Toml, ErrorsNameTheLineAndColumn) {
  const std::vector<std::pair<std::string, std::string>> cases{
      // a key given twice, directly, by dotted keys or in an inline table
      {"a = 1\na = 2", "t.toml:2:1: key a is given twice (first at 1:1)"},
      // a byte order mark is not a column
      {"\xEF\xBB\xBF"
       "a = 1 x",
       "t.toml:1:7: expected the end of the line after the value of a, got 'x'"},
      {"p.q = 1\n p . q = 2", "t.toml:2:6: key p.q is given twice (first at 1:3)"},
      {"x = {a = 1, a = 2}", "t.toml:1:13: key a is given twice (first at 1:6)"},
      {"\"a\" = 1\na = 2", "t.toml:2:1: key a is given twice (first at 1:1)"},
      {"[t]\nb.c = 1\nb = 2", "t.toml:3:1: key b is already a table (made at 2:1)"},
      // unterminated strings and arrays, at their opening
      {"a = \"abc\nb = 1", "t.toml:1:5: unterminated string: no closing \" on its line"},
      {"a = 'abc", "t.toml:1:5: unterminated string: no closing ' on its line"},
      {"x = 1\na = \"\"\"abc\n", "t.toml:2:5: unterminated multi-line string"},
      {"a = '''abc", "t.toml:1:5: unterminated multi-line string"},
      {"a = [1, 2", "t.toml:1:5: unterminated array"},
      // bad values
      {"a = yes",
       "t.toml:1:5: expected a value (a string, a number, true or false, an array or "
       "an inline table), got 'yes' (a string is written in quotes)"},
      {"a =\n", "t.toml:1:4: expected a value"},
      {"a = 01", "t.toml:1:5: invalid number '01': leading zeros are not allowed"},
      {"a = 1__0", "t.toml:1:5: invalid number '1__0': each '_' must stand between two digits"},
      {"a = _1", "t.toml:1:5: expected a value"},
      {"a = 1_", "t.toml:1:5: invalid number '1_': each '_' must stand between two digits"},
      {"a = 1.", "t.toml:1:5: invalid number '1.': expected digits after the '.'"},
      {"a = .5", "t.toml:1:5: invalid number '.5': expected digits before the fraction"},
      {"a = 1e", "t.toml:1:5: invalid number '1e': expected digits in the exponent"},
      {"a = 1.5.3", "t.toml:1:5: invalid number '1.5.3': '.' is not a decimal digit"},
      {"a = 1e400", "t.toml:1:5: invalid number '1e400': outside the range of a 64-bit float"},
      {"a = 0xG", "t.toml:1:5: invalid number '0xG': 'G' is not a hexadecimal digit"},
      {"a = 0b102", "t.toml:1:5: invalid number '0b102': '2' is not a binary digit"},
      {"a = +0x1",
       "t.toml:1:5: invalid number '+0x1': a hexadecimal, octal or binary integer "
       "takes no sign"},
      {"a = 9223372036854775808", "t.toml:1:5: invalid number '9223372036854775808': outside"},
      {"a = -9223372036854775809", "t.toml:1:5: invalid number '-9223372036854775809': outside"},
      {"a = 0xFFFFFFFFFFFFFFFF", "t.toml:1:5: invalid number '0xFFFFFFFFFFFFFFFF': outside"},
      {"a = True", "t.toml:1:5: expected a value"},
      {"a = \"\\q\"", "t.toml:1:6: invalid escape: '\\' followed by 'q'"},
      {"a = \"\\u12\"", "t.toml:1:6: invalid escape: \\u takes 4 hexadecimal digits"},
      {"a = \"\\uD800\"", "t.toml:1:6: invalid escape: \\uD800 is not a Unicode scalar value"},
      {"a = \"\\U00110000\"", "t.toml:1:6: invalid escape: \\U00110000 is not a Unicode"},
      {"a = \"x\x01\"", "t.toml:1:7: the control character U+0001 is not allowed in a string"},
      {"a = 1 # \x7f", "t.toml:1:9: the control character U+007F is not allowed in a comment"},
      {"a = \"\"\"x\"\"\"\"\"\"", "t.toml:1:9: three \" in a row end a multi-line string"},
      // dates and times
      {"d = 1979-05-27", "t.toml:1:5: dates and times are not supported, got '1979-05-27'"},
      {"d = 1979-05-27T07:32:00Z", "t.toml:1:5: dates and times are not supported"},
      {"t = 07:32:00", "t.toml:1:5: dates and times are not supported"},
      // a table defined twice, or reopened
      {"[t]\na = 1\n[t]", "t.toml:3:1: table [t] is defined twice (first at 1:1)"},
      {"[a.b]\n[a]\n[a.b]", "t.toml:3:1: table [a.b] is defined twice (first at 1:1)"},
      {"[a]\nb.c = 1\n[a.b]",
       "t.toml:3:1: table [a.b] was already defined by dotted keys (at 2:1)"},
      {"a.b = 1\n[a]", "t.toml:2:1: table [a] was already defined by dotted keys (at 1:1)"},
      {"a = 1\n[a]", "t.toml:2:2: table [a]: a already holds a value (given at 1:1), not a table"},
      {"a = {b = 1}\n[a.c]", "t.toml:2:2: table [a.c]: a already holds a value (given at 1:1)"},
      {"a = {b = 1}\na.c = 2", "t.toml:2:1: a already holds a value (given at 1:1), not a table"},
      {"[a.b]\nx = 1\n[a]\nb.y = 2",
       "t.toml:4:1: table b is defined by its header (at 1:1); add its keys under that header"},
      {"[[t]]", "t.toml:1:1: arrays of tables ([[name]]) are not supported"},
      // something after a value, a header or a key
      {"a = 1 x", "t.toml:1:7: expected the end of the line after the value of a, got 'x'"},
      {"a = \"s\" \"t\"",
       "t.toml:1:9: expected the end of the line after the value of a, got '\"'"},
      {"a = [1] ]", "t.toml:1:9: expected the end of the line after the value of a, got ']'"},
      {"[t] x = 1", "t.toml:1:5: expected the end of the line after the table header, got 'x'"},
      {"\"\xC3\xA9\" = \"x\" z",
       "t.toml:1:11: expected the end of the line"},  // columns count characters
      {"a 1", "t.toml:1:3: expected '=' after the key a, got '1'"},
      {"= 1", "t.toml:1:1: expected a key"},
      {"[t", "t.toml:1:3: expected ']' to close the table header, got the end of the file"},
      {"\"\"\"k\"\"\" = 1", "t.toml:1:1: a key cannot be a multi-line string"},
      // arrays and inline tables
      {"a = [1 2]",
       "t.toml:1:8: expected ',' or ']' after an element of the array opened at 1:5, "
       "got '2'"},
      {"a = [1,,2]", "t.toml:1:8: expected a value"},
      {"a = {b = 1,\n c = 2}",
       "t.toml:1:12: expected '}' to close the inline table opened at 1:5 "
       "(an inline table stays on one line), got the end of the line"},
      {"a = {b = 1,}", "t.toml:1:12: an inline table takes no ',' after its last value"},
      {"a = {b = 1 c = 2}", "t.toml:1:12: expected ',' or '}' after a value of the inline table"},
      {"a = {b = 1", "t.toml:1:11: expected '}' to close the inline table opened at 1:5"},
      // line ends and encoding
      {"a = 1\rb = 2",
       "t.toml:1:6: expected the end of the line after the value of a, got the "
       "control character U+000D"},
      {"a = \"\xFF\"", "t.toml:1:6: invalid UTF-8 (byte 0xFF)"},
      {"a = \"\xED\xA0\x80\"", "t.toml:1:6: invalid UTF-8 (byte 0xED)"},
      {"a = \"\xC0\xAF\"", "t.toml:1:6: invalid UTF-8 (byte 0xC0)"},
  };
  for (const auto& [text, want] : cases) {
    SCOPED_TRACE(text);
    const std::string got = error(text);
    EXPECT_EQ(got.substr(0, want.size()), want);
  }
}

TEST(Toml, DeepNestingIsAnErrorNotACrash) {
  EXPECT_EQ(as_json("a = " + std::string(100, '[') + std::string(100, ']')).size(), 206u);
  const std::string got = error("a = " + std::string(100000, '['));
  EXPECT_EQ(got, "t.toml:1:133: tables, arrays and inline tables nested more than 128 deep");
}

// Dotted keys and table headers nest tables as arrays do: 50000 parts would build a table tree
// (and JSON) that its recursive teardown could not walk. The limit counts every kind together.
TEST(Toml, DeepDottedKeysAndHeadersAreAnErrorNotACrash) {
  std::string dotted = "a";
  for (int k = 0; k < 50000; ++k) dotted += ".a";
  EXPECT_EQ(error(dotted + " = 1"),
            "t.toml:1:257: tables, arrays and inline tables nested more than 128 deep");
  EXPECT_EQ(error("[" + dotted + "]"),
            "t.toml:1:258: tables, arrays and inline tables nested more than 128 deep");
  // 128 levels in all are taken: 127 tables of a header and one array; one more is refused,
  // at the array that goes past.
  std::string header = "a";
  for (int k = 1; k < 127; ++k) header += ".a";
  EXPECT_NO_THROW(as_json("[" + header + "]\nb = [1]"));
  EXPECT_EQ(error("[" + header + "]\nb = [[1]]"),
            "t.toml:2:6: tables, arrays and inline tables nested more than 128 deep");
  EXPECT_EQ(error("[" + header + "]\nb = {c.d = 1}"),
            "t.toml:2:6: tables, arrays and inline tables nested more than 128 deep");
}
