// toml.h: a strict reader of TOML v1.0 documents into JSON, for files whose schema is defined as
// JSON (a sweep file): what it accepts is exactly TOML, and every error names the file, the line
// and the column.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace gl::io {

// Parses the TOML document `text` into a JSON object whose keys keep the document's order.
// Tables (headers, dotted keys, inline tables) become objects, arrays arrays, strings strings,
// booleans booleans; an integer becomes a JSON integer (unsigned when not negative, as
// nlohmann's JSON parser reads one), a float a JSON float (inf and nan included).
//
// Covered: comments, bare, quoted and dotted keys, [table] headers, basic and literal strings
// (single- and multi-line, every escape of TOML 1.0), decimal, hex, octal and binary integers
// with _ separators, floats with exponents, inf and nan, booleans, arrays (nested, over several
// lines, with a trailing comma) and inline tables. Refused with a message that says so: arrays
// of tables ([[name]]) and dates and times. Everything TOML forbids is refused: a key or a table
// defined twice, a table reopened by a header or by dotted keys, an unterminated string or
// array, a bad escape or number, a value followed by anything but a comment on its line,
// invalid UTF-8.
//
// Throws gl::Error "SOURCE:LINE:COLUMN: what" (columns count characters from 1).
nlohmann::ordered_json parse_toml(std::string_view text, const std::string& source);

}  // namespace gl::io
