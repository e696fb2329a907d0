// tensorboard.h: TensorBoard event files written without protobuf or TensorFlow: TFRecord
// framing (length, masked CRC32C of the length, payload, masked CRC32C of the payload) around
// hand-encoded tensorflow.Event messages carrying Summary scalars and HistogramProto
// histograms. Field numbers (tensorflow/core/util/event.proto, framework/summary.proto):
//   Event          wall_time=1 double, step=2 int64, file_version=3 string, summary=5 Summary
//   Summary        value=1 repeated Value
//   Summary.Value  tag=1 string, simple_value=2 float, histo=5 HistogramProto
//   HistogramProto min=1 max=2 num=3 sum=4 sum_squares=5 double,
//                  bucket_limit=6 packed double, bucket=7 packed double
// A reader for the same subset (every CRC checked) serves the tests and `gradlens` users.
#pragma once
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "train/trainer.h"

namespace gl::analysis::tb {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table driven; `crc` continues a
// previous result.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
// TFRecord's masking: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t mask_crc(uint32_t crc);
// One framed record.
std::string tfrecord(std::string_view payload);

struct Histogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limit, bucket;  // right edges and counts, same length
};
// `bins` equal-width buckets between the minimum and maximum (one bucket when all values are
// equal); bucket i covers (limit[i-1], limit[i]], the first from -inf.
Histogram make_histogram(const float* values, size_t n, int bins = 30);

struct SummaryValue {
  std::string tag;
  std::optional<float> simple_value;
  std::optional<Histogram> histo;
};

struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;  // empty unless this is the header event
  bool has_summary = false;
  std::vector<SummaryValue> values;
};

// Serialized tensorflow.Event.
std::string encode_event(const Event& e);
// Parses one serialized Event (unknown fields skipped); throws naming `source` on bad bytes.
Event decode_event(std::string_view bytes, const std::string& source = "event");
// Reads every record of an event file, checking both CRCs of each; throws naming the file and
// the byte offset of the first bad record.
std::vector<Event> read_event_file(const std::string& path);

// Appends events to <dir>/events.out.tfevents.<unix time>.<host>, starting with the
// "brain.Event:2" header. Each add_* writes one record; flush() pushes them to disk.
class EventWriter {
 public:
  explicit EventWriter(const std::string& dir);
  const std::string& path() const { return path_; }
  void add_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& scalars);
  void add_histograms(int64_t step, const std::vector<std::pair<std::string, Histogram>>& histos);
  void write(const Event& e);
  void flush();

 private:
  std::string path_;
  std::ofstream out_;
};

// Writes every metrics.csv column as a scalar each epoch (step = epoch), the histogram of every
// hidden layer's post-activation over the test split, and of every parameter's gradient at
// the epoch's last step. Attach it after the callbacks that add metrics.csv columns.
class TensorBoardCallback : public train::Callback {
 public:
  explicit TensorBoardCallback(std::string dir = "", int bins = 30);  // "": <run dir>/tensorboard
  void on_train_begin(train::Trainer& t) override;
  void on_evaluate_begin(train::Trainer& t, int64_t epoch) override;
  void on_evaluate_end(train::Trainer& t, int64_t epoch) override;
  void on_epoch_end(train::Trainer& t, train::EpochResult& result) override;
  void on_train_end(train::Trainer& t) override;
  // Its hooks capture evaluation passes only; gradients are read from .grad.
  bool needs_tape(const train::Trainer&, int64_t) const override { return false; }
  const std::string& path() const;

 private:
  std::string dir_;
  int bins_;
  std::unique_ptr<EventWriter> writer_;
  std::vector<std::pair<std::string, int64_t>> hooks_;  // (layer tag, hook id on the module)
  std::vector<std::vector<float>> act_values_;
  bool capturing_ = false;
};

}  // namespace gl::analysis::tb
