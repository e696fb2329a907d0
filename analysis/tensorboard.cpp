// tensorboard.cpp: CRC32C, TFRecord framing, the protobuf wire format of the Event subset we
// write (see tensorboard.h), its reader, and the TensorBoard training callback.
#include "analysis/tensorboard.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "engine/io/fs.h"

namespace gl::analysis::tb {
namespace {

std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

// ---- protobuf wire format ----
enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

void put_varint(std::string& s, uint64_t v) {
  while (v >= 0x80) {
    s.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  s.push_back(char(v));
}
void put_key(std::string& s, uint32_t field, Wire w) {
  put_varint(s, (uint64_t(field) << 3) | w);
}
template <class T>
void put_raw(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian host (x86-64, aarch64)
  s.append(b, sizeof(T));
}
void put_double(std::string& s, uint32_t field, double v) {
  put_key(s, field, kFixed64);
  put_raw(s, v);
}
void put_bytes(std::string& s, uint32_t field, std::string_view v) {
  put_key(s, field, kLen);
  put_varint(s, v.size());
  s.append(v);
}
void put_packed_doubles(std::string& s, uint32_t field, const std::vector<double>& v) {
  std::string body;
  for (double d : v) put_raw(body, d);
  put_bytes(s, field, body);
}

std::string encode_histogram(const Histogram& h) {
  std::string s;
  put_double(s, 1, h.min);
  put_double(s, 2, h.max);
  put_double(s, 3, h.num);
  put_double(s, 4, h.sum);
  put_double(s, 5, h.sum_squares);
  put_packed_doubles(s, 6, h.bucket_limit);
  put_packed_doubles(s, 7, h.bucket);
  return s;
}

std::string encode_value(const SummaryValue& v) {
  std::string s;
  put_bytes(s, 1, v.tag);
  if (v.simple_value) {
    put_key(s, 2, kFixed32);
    put_raw(s, *v.simple_value);
  }
  if (v.histo) put_bytes(s, 5, encode_histogram(*v.histo));
  return s;
}

// A bounds-checked cursor over one message.
struct Reader {
  std::string_view b;
  size_t pos = 0;
  const std::string& source;

  [[noreturn]] void fail(const char* what) const {
    throw Error(fmt::format("{}: malformed protobuf at byte {}: {}", source, pos, what));
  }
  bool done() const { return pos >= b.size(); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= b.size()) fail("truncated varint");
      uint8_t c = uint8_t(b[pos++]);
      v |= uint64_t(c & 0x7f) << shift;
      if (!(c & 0x80)) return v;
    }
    fail("varint longer than 10 bytes");
  }
  template <class T>
  T raw() {
    if (b.size() - pos < sizeof(T)) fail("truncated fixed-width field");
    T v;
    std::memcpy(&v, b.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string_view bytes() {
    uint64_t n = varint();
    if (n > b.size() - pos) fail("length runs past the end");
    auto v = b.substr(pos, size_t(n));
    pos += size_t(n);
    return v;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case kVarint: varint(); break;
      case kFixed64: raw<uint64_t>(); break;
      case kLen: bytes(); break;
      case kFixed32: raw<uint32_t>(); break;
      default: fail("unsupported wire type");
    }
  }
  void expect(uint32_t wire, uint32_t want, const char* field) {
    if (wire != want) fail(field);
  }
};

std::vector<double> packed_doubles(Reader& r, uint32_t wire) {
  std::vector<double> out;
  if (wire == kFixed64) {  // unpacked encoding is also legal
    out.push_back(r.raw<double>());
    return out;
  }
  r.expect(wire, kLen, "packed double field has the wrong wire type");
  auto body = r.bytes();
  if (body.size() % 8) r.fail("packed doubles: length not a multiple of 8");
  out.resize(body.size() / 8);
  std::memcpy(out.data(), body.data(), body.size());
  return out;
}

Histogram decode_histogram(std::string_view b, const std::string& source) {
  Reader r{b, 0, source};
  Histogram h;
  while (!r.done()) {
    uint64_t key = r.varint();
    uint32_t f = uint32_t(key >> 3), w = uint32_t(key & 7);
    if (f >= 1 && f <= 5) {
      r.expect(w, kFixed64, "HistogramProto double field has the wrong wire type");
      double v = r.raw<double>();
      (f == 1 ? h.min : f == 2 ? h.max : f == 3 ? h.num : f == 4 ? h.sum : h.sum_squares) = v;
    } else if (f == 6 || f == 7) {
      auto v = packed_doubles(r, w);
      auto& dst = f == 6 ? h.bucket_limit : h.bucket;
      dst.insert(dst.end(), v.begin(), v.end());
    } else {
      r.skip(w);
    }
  }
  return h;
}

SummaryValue decode_value(std::string_view b, const std::string& source) {
  Reader r{b, 0, source};
  SummaryValue v;
  while (!r.done()) {
    uint64_t key = r.varint();
    uint32_t f = uint32_t(key >> 3), w = uint32_t(key & 7);
    if (f == 1) {
      r.expect(w, kLen, "Value.tag has the wrong wire type");
      v.tag = std::string(r.bytes());
    } else if (f == 2) {
      r.expect(w, kFixed32, "Value.simple_value has the wrong wire type");
      v.simple_value = r.raw<float>();
    } else if (f == 5) {
      r.expect(w, kLen, "Value.histo has the wrong wire type");
      v.histo = decode_histogram(r.bytes(), source);
    } else {
      r.skip(w);
    }
  }
  return v;
}

uint64_t read_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint32_t read_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = make_table();
  auto p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t mask_crc(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string tfrecord(std::string_view payload) {
  std::string s;
  uint64_t len = payload.size();
  put_raw(s, len);
  put_raw(s, mask_crc(crc32c(&len, 8)));
  s.append(payload);
  put_raw(s, mask_crc(crc32c(payload.data(), payload.size())));
  return s;
}

Histogram make_histogram(const float* values, size_t n, int bins) {
  GL_CHECK(bins >= 1, "make_histogram: bins must be >= 1, got {}", bins);
  Histogram h;
  if (n == 0) return h;
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; ++i) {
    double v = values[i];
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    h.sum += v;
    h.sum_squares += v * v;
    h.num += 1;
  }
  if (h.num == 0) return h;
  h.min = lo;
  h.max = hi;
  if (hi == lo) bins = 1;
  const double width = (hi - lo) / bins;
  h.bucket.assign(size_t(bins), 0.0);
  for (int b = 0; b < bins; ++b) h.bucket_limit.push_back(b + 1 == bins ? hi : lo + width * (b + 1));
  for (size_t i = 0; i < n; ++i) {
    double v = values[i];
    if (!std::isfinite(v)) continue;
    // Bucket b holds (limit[b-1], limit[b]]; the minimum lands in bucket 0.
    auto it = std::lower_bound(h.bucket_limit.begin(), h.bucket_limit.end(), v);
    size_t b = std::min<size_t>(size_t(it - h.bucket_limit.begin()), size_t(bins - 1));
    h.bucket[b] += 1;
  }
  return h;
}

std::string encode_event(const Event& e) {
  std::string s;
  put_double(s, 1, e.wall_time);
  put_key(s, 2, kVarint);
  put_varint(s, uint64_t(e.step));
  if (!e.file_version.empty()) put_bytes(s, 3, e.file_version);
  if (e.has_summary) {
    std::string summary;
    for (auto& v : e.values) put_bytes(summary, 1, encode_value(v));
    put_bytes(s, 5, summary);
  }
  return s;
}

Event decode_event(std::string_view bytes, const std::string& source) {
  Reader r{bytes, 0, source};
  Event e;
  while (!r.done()) {
    uint64_t key = r.varint();
    uint32_t f = uint32_t(key >> 3), w = uint32_t(key & 7);
    if (f == 1) {
      r.expect(w, kFixed64, "Event.wall_time has the wrong wire type");
      e.wall_time = r.raw<double>();
    } else if (f == 2) {
      r.expect(w, kVarint, "Event.step has the wrong wire type");
      e.step = int64_t(r.varint());
    } else if (f == 3) {
      r.expect(w, kLen, "Event.file_version has the wrong wire type");
      e.file_version = std::string(r.bytes());
    } else if (f == 5) {
      r.expect(w, kLen, "Event.summary has the wrong wire type");
      e.has_summary = true;
      Reader s{r.bytes(), 0, source};
      while (!s.done()) {
        uint64_t k2 = s.varint();
        if ((k2 >> 3) == 1 && (k2 & 7) == kLen)
          e.values.push_back(decode_value(s.bytes(), source));
        else
          s.skip(uint32_t(k2 & 7));
      }
    } else {
      r.skip(w);
    }
  }
  return e;
}

std::vector<Event> read_event_file(const std::string& path) {
  std::vector<uint8_t> data = io::read_file(path);
  std::vector<Event> events;
  size_t pos = 0;
  while (pos < data.size()) {
    GL_CHECK(data.size() - pos >= 12, "{}: truncated record header at byte {}", path, pos);
    uint64_t len = read_u64(&data[pos]);
    GL_CHECK(read_u32(&data[pos + 8]) == mask_crc(crc32c(&data[pos], 8)),
             "{}: length CRC mismatch in the record at byte {}", path, pos);
    GL_CHECK(len <= data.size() - pos - 12 && data.size() - pos - 12 - len >= 4,
             "{}: record at byte {} runs past the end of the file (length {})", path, pos, len);
    const uint8_t* payload = &data[pos + 12];
    GL_CHECK(read_u32(payload + len) == mask_crc(crc32c(payload, size_t(len))),
             "{}: payload CRC mismatch in the record at byte {}", path, pos);
    events.push_back(decode_event(
        std::string_view(reinterpret_cast<const char*>(payload), size_t(len)),
        fmt::format("{} (record at byte {})", path, pos)));
    pos += 12 + size_t(len) + 4;
  }
  return events;
}

EventWriter::EventWriter(const std::string& dir) {
  io::ensure_dir(dir);
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || !host[0]) std::strcpy(host, "localhost");
  path_ = fmt::format("{}/events.out.tfevents.{}.{}", dir, int64_t(now_seconds()), host);
  // An existing file of the same second (a quick re-run) gets a numbered sibling.
  for (int k = 1; std::filesystem::exists(path_); ++k)
    path_ = fmt::format("{}/events.out.tfevents.{}.{}.{}", dir, int64_t(now_seconds()), host, k);
  out_.open(path_, std::ios::binary);
  GL_CHECK(out_.good(), "--tensorboard: cannot create event file '{}'", path_);
  Event header;
  header.wall_time = now_seconds();
  header.file_version = "brain.Event:2";
  write(header);
  flush();
}

void EventWriter::write(const Event& e) {
  std::string rec = tfrecord(encode_event(e));
  out_.write(rec.data(), std::streamsize(rec.size()));
  GL_CHECK(out_.good(), "{}: write failed", path_);
}

void EventWriter::flush() {
  out_.flush();
  GL_CHECK(out_.good(), "{}: flush failed", path_);
}

void EventWriter::add_scalars(int64_t step,
                              const std::vector<std::pair<std::string, double>>& scalars) {
  Event e;
  e.wall_time = now_seconds();
  e.step = step;
  e.has_summary = true;
  for (auto& [tag, v] : scalars) e.values.push_back({tag, float(v), std::nullopt});
  write(e);
}

void EventWriter::add_histograms(int64_t step,
                                 const std::vector<std::pair<std::string, Histogram>>& histos) {
  Event e;
  e.wall_time = now_seconds();
  e.step = step;
  e.has_summary = true;
  for (auto& [tag, h] : histos) e.values.push_back({tag, std::nullopt, h});
  write(e);
}

// ---- the callback ----

TensorBoardCallback::TensorBoardCallback(std::string dir, int bins) : dir_(std::move(dir)), bins_(bins) {}

const std::string& TensorBoardCallback::path() const {
  static const std::string none;
  return writer_ ? writer_->path() : none;
}

void TensorBoardCallback::on_train_begin(train::Trainer& t) {
  std::string dir = dir_.empty() ? t.run_dir() + "/tensorboard" : dir_;
  writer_ = std::make_unique<EventWriter>(dir);
  auto& taps = t.model().taps();
  act_values_.assign(taps.size(), {});
  for (size_t i = 0; i < taps.size(); ++i) {
    auto id = taps[i].post->add_forward_hook(
        [this, i](const models::Module&, const Tensor&, const Tensor& out) {
          if (!capturing_) return;
          Tensor h = out.detach();
          if (!h.device().is_cpu()) h = h.to(Device::cpu());
          auto v = h.to_vector<float>();
          act_values_[i].insert(act_values_[i].end(), v.begin(), v.end());
        });
    hooks_.emplace_back(std::to_string(i), id);
  }
}

void TensorBoardCallback::on_evaluate_begin(train::Trainer&, int64_t) {
  for (auto& v : act_values_) v.clear();
  capturing_ = true;
}

void TensorBoardCallback::on_evaluate_end(train::Trainer&, int64_t) {
  capturing_ = false;
}

void TensorBoardCallback::on_epoch_end(train::Trainer& t, train::EpochResult& r) {
  std::vector<std::pair<std::string, double>> scalars = {{"train_loss", r.train_loss},
                                                         {"test_loss", r.test_loss},
                                                         {"train_acc", r.train_acc},
                                                         {"test_acc", r.test_acc},
                                                         {"epoch_time", r.epoch_time}};
  for (auto& kv : r.extra) scalars.push_back(kv);
  writer_->add_scalars(r.epoch, scalars);

  std::vector<std::pair<std::string, Histogram>> histos;
  auto& taps = t.model().taps();
  for (size_t i = 0; i < act_values_.size() && i < taps.size(); ++i)
    if (!act_values_[i].empty())
      histos.emplace_back(fmt::format("activations/layer{}_post", i),
                          make_histogram(act_values_[i].data(), act_values_[i].size(), bins_));
  for (auto& [name, p] : t.model().named_parameters()) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    auto v = g.detach().to_vector<float>();
    histos.emplace_back("gradients/" + name, make_histogram(v.data(), v.size(), bins_));
  }
  if (!histos.empty()) writer_->add_histograms(r.epoch, histos);
  writer_->flush();
}

void TensorBoardCallback::on_train_end(train::Trainer& t) {
  auto& taps = t.model().taps();
  for (size_t i = 0; i < hooks_.size() && i < taps.size(); ++i)
    taps[i].post->remove_forward_hook(hooks_[i].second);
  hooks_.clear();
  if (writer_) writer_->flush();
}

}  // namespace gl::analysis::tb
