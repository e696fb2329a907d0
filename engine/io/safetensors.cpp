// safetensors.cpp: the safetensors writer (reference layout and padding) and a strict reader.
#include "engine/io/safetensors.h"

#include <fmt/core.h>
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "engine/io/fs.h"
#include "engine/io/json_file.h"

namespace gl::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this build assumes a little-endian host");

// Header sizes above this are rejected, as the reference implementation does (100 MB).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeInfo {
  const char* name;
  int64_t size;
};

// In increasing alignment order: the reference sorts tensors by descending position here.
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8},
};

int dtype_rank(const std::string& dtype) {
  for (int i = 0; i < static_cast<int>(std::size(kDtypes)); ++i)
    if (dtype == kDtypes[i].name) return i;
  return -1;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ","));
}

// Element count of a shape, or -1 on overflow / negative dimension.
int64_t checked_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

}  // namespace

int64_t safetensors_dtype_size(const std::string& dtype) {
  int r = dtype_rank(dtype);
  if (r < 0) throw std::runtime_error(fmt::format("unknown safetensors dtype '{}'", dtype));
  return kDtypes[r].size;
}

std::vector<uint8_t> serialize_safetensors(const std::vector<NamedBuffer>& entries,
                                           const std::map<std::string, std::string>& metadata) {
  std::set<std::string> seen;
  for (const auto& e : entries) {
    if (e.name == "__metadata__")
      throw std::runtime_error("safetensors: '__metadata__' is reserved and cannot name a tensor");
    if (!seen.insert(e.name).second)
      throw std::runtime_error(fmt::format("safetensors: duplicate tensor name '{}'", e.name));
    int64_t size = safetensors_dtype_size(e.dtype);
    int64_t numel = checked_numel(e.shape);
    if (numel < 0)
      throw std::runtime_error(
          fmt::format("safetensors: tensor '{}' has invalid shape {}", e.name, shape_str(e.shape)));
    if (static_cast<uint64_t>(numel * size) != e.bytes.size())
      throw std::runtime_error(
          fmt::format("safetensors: tensor '{}' shape {} dtype {} needs {} bytes but {} were given",
                      e.name, shape_str(e.shape), e.dtype, numel * size, e.bytes.size()));
  }
  std::vector<const NamedBuffer*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const NamedBuffer* a, const NamedBuffer* b) {
    int ra = dtype_rank(a->dtype), rb = dtype_rank(b->dtype);
    if (ra != rb) return ra > rb;
    return a->name < b->name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const NamedBuffer* e : order) {
    nlohmann::ordered_json info = nlohmann::ordered_json::object();
    info["dtype"] = e->dtype;
    info["shape"] = e->shape;
    info["data_offsets"] = {offset, offset + e->bytes.size()};
    offset += e->bytes.size();
    header[e->name] = std::move(info);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<uint8_t> out;
  out.reserve(8 + text.size() + offset);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), text.begin(), text.end());
  for (const NamedBuffer* e : order) out.insert(out.end(), e->bytes.begin(), e->bytes.end());
  return out;
}

SafetensorsFile parse_safetensors(const std::vector<uint8_t>& file, const std::string& source) {
  auto fail = [&](const std::string& problem) {
    return std::runtime_error(fmt::format("safetensors file '{}': {}", source, problem));
  };
  if (file.size() < 8)
    throw fail(
        fmt::format("file is {} bytes, too short for the 8-byte header length", file.size()));
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(file[i]) << (8 * i);
  if (n > kMaxHeaderBytes)
    throw fail(fmt::format("header length {} exceeds the {} byte limit", n, kMaxHeaderBytes));
  if (n > file.size() - 8)
    throw fail(fmt::format("header length {} exceeds the {} bytes after the length field", n,
                           file.size() - 8));
  const char* text = reinterpret_cast<const char*>(file.data() + 8);

  // nlohmann keeps the last of duplicate keys silently; a callback catches them at depth 1.
  std::set<std::string> keys;
  std::string duplicate;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && duplicate.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!keys.insert(key).second) duplicate = key;
    }
    return true;
  };
  nlohmann::json header;
  try {
    check_json_nesting(std::string_view(text, n), "header");
  } catch (const std::runtime_error& e) {
    throw fail(e.what());
  }
  try {
    header = nlohmann::json::parse(text, text + n, on_event);
  } catch (const nlohmann::json::exception& e) {
    throw fail(fmt::format("invalid JSON header: {}", e.what()));
  }
  if (!duplicate.empty()) throw fail(fmt::format("duplicate tensor name '{}'", duplicate));
  if (!header.is_object()) throw fail("header is not a JSON object");

  const uint64_t buffer_size = file.size() - 8 - n;
  const uint8_t* buffer = file.data() + 8 + n;
  SafetensorsFile result;
  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& info = it.value();
    if (name == "__metadata__") {
      if (!info.is_object()) throw fail("__metadata__ is not a JSON object");
      for (auto m = info.begin(); m != info.end(); ++m) {
        if (!m.value().is_string())
          throw fail(fmt::format("__metadata__ entry '{}' is not a string", m.key()));
        result.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!info.is_object()) throw fail(fmt::format("tensor '{}': entry is not a JSON object", name));
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!info.contains(field))
        throw fail(fmt::format("tensor '{}': missing field '{}'", name, field));
    if (!info["dtype"].is_string())
      throw fail(fmt::format("tensor '{}': dtype is not a string", name));
    NamedBuffer entry;
    entry.name = name;
    entry.dtype = info["dtype"].get<std::string>();
    if (dtype_rank(entry.dtype) < 0)
      throw fail(fmt::format("tensor '{}': unknown dtype '{}'", name, entry.dtype));
    const auto& shape = info["shape"];
    if (!shape.is_array()) throw fail(fmt::format("tensor '{}': shape is not an array", name));
    for (const auto& d : shape) {
      if (!d.is_number_unsigned())
        throw fail(fmt::format("tensor '{}': shape entry {} is not a non-negative integer", name,
                               d.dump()));
      uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw fail(fmt::format("tensor '{}': shape entry {} is too large", name, v));
      entry.shape.push_back(static_cast<int64_t>(v));
    }
    const auto& offs = info["data_offsets"];
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() ||
        !offs[1].is_number_unsigned())
      throw fail(fmt::format("tensor '{}': data_offsets must be two non-negative integers, got {}",
                             name, offs.dump()));
    uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
    if (end < begin)
      throw fail(
          fmt::format("tensor '{}': data_offsets [{},{}] end before they begin", name, begin, end));
    if (end > buffer_size)
      throw fail(
          fmt::format("tensor '{}': data_offsets [{},{}] out of range: the data buffer is "
                      "{} bytes",
                      name, begin, end, buffer_size));
    int64_t numel = checked_numel(entry.shape);
    int64_t elem = safetensors_dtype_size(entry.dtype);
    if (numel < 0 || (elem > 1 && numel > std::numeric_limits<int64_t>::max() / elem))
      throw fail(fmt::format("tensor '{}': shape {} overflows", name, shape_str(entry.shape)));
    if (static_cast<uint64_t>(numel * elem) != end - begin)
      throw fail(fmt::format(
          "tensor '{}': shape {} with dtype {} needs {} bytes but data_offsets [{},{}] span {}",
          name, shape_str(entry.shape), entry.dtype, numel * elem, begin, end, end - begin));
    spans.push_back({begin, end, result.tensors.size()});
    result.tensors.push_back(std::move(entry));
  }

  // The tensors must tile the buffer exactly: sorted by offset, each starts where the last ended.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  const std::string* previous = nullptr;
  for (const Span& s : spans) {
    const std::string& name = result.tensors[s.index].name;
    if (s.begin < cursor)
      throw fail(
          fmt::format("tensors '{}' and '{}' have overlapping data_offsets", *previous, name));
    if (s.begin > cursor)
      throw fail(
          fmt::format("data buffer is not contiguous: bytes [{},{}) before tensor '{}' "
                      "belong to no tensor",
                      cursor, s.begin, name));
    cursor = s.end;
    previous = &name;
  }
  if (cursor != buffer_size)
    throw fail(fmt::format("data buffer is not contiguous: {} trailing bytes belong to no tensor",
                           buffer_size - cursor));

  std::vector<NamedBuffer> ordered;
  ordered.reserve(spans.size());
  for (const Span& s : spans) {
    NamedBuffer& e = result.tensors[s.index];
    e.bytes.assign(buffer + s.begin, buffer + s.end);
    ordered.push_back(std::move(e));
  }
  result.tensors = std::move(ordered);
  return result;
}

void save_safetensors(const std::string& path, const std::vector<NamedBuffer>& entries,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<uint8_t> bytes;
  try {
    bytes = serialize_safetensors(entries, metadata);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(fmt::format("cannot save '{}': {}", path, e.what()));
  }
  write_file_atomic(path, bytes);
}

SafetensorsFile load_safetensors(const std::string& path) {
  return parse_safetensors(read_file(path), path);
}

}  // namespace gl::io
