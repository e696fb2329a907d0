// metrics.h: classification metrics from predicted and true labels: accuracy, per-class
// accuracy (recall), precision, F1 and support, confusion matrix, macro-F1, the misclassified
// examples.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gl::train {

struct ClassificationReport {
  int64_t num_classes = 0;
  int64_t total = 0;
  int64_t correct = 0;
  double accuracy = 0;
  double macro_f1 = 0;
  std::vector<std::vector<int64_t>> confusion;  // [true][pred]
  std::vector<double> class_accuracy, precision, recall, f1;
  std::vector<int64_t> support;
  std::vector<int64_t> misclassified;  // dataset indices, ascending
};

ClassificationReport classification_report(const std::vector<int64_t>& truth,
                                           const std::vector<int64_t>& pred,
                                           int64_t num_classes);

// CSV texts of the run directory (docs/run_directory.md).
std::string per_class_csv(const ClassificationReport& r);
std::string confusion_csv(const ClassificationReport& r);
std::string misclassified_csv(const ClassificationReport& r, const std::vector<int64_t>& truth,
                              const std::vector<int64_t>& pred);

}  // namespace gl::train
