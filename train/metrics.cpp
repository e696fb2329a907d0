// metrics.cpp: counts from the confusion matrix.
#include "train/metrics.h"

#include <fmt/format.h>

#include "engine/core.h"

namespace gl::train {

ClassificationReport classification_report(const std::vector<int64_t>& truth,
                                           const std::vector<int64_t>& pred,
                                           int64_t num_classes) {
  GL_CHECK(truth.size() == pred.size(), "metrics: {} labels but {} predictions", truth.size(),
           pred.size());
  GL_CHECK(num_classes > 0, "metrics: num_classes must be positive");
  ClassificationReport r;
  r.num_classes = num_classes;
  r.total = int64_t(truth.size());
  r.confusion.assign(std::size_t(num_classes), std::vector<int64_t>(std::size_t(num_classes), 0));
  for (std::size_t i = 0; i < truth.size(); ++i) {
    GL_CHECK(truth[i] >= 0 && truth[i] < num_classes && pred[i] >= 0 && pred[i] < num_classes,
             "metrics: label {} or prediction {} outside [0, {})", truth[i], pred[i], num_classes);
    r.confusion[truth[i]][pred[i]]++;
    if (truth[i] == pred[i]) ++r.correct;
    else r.misclassified.push_back(int64_t(i));
  }
  r.accuracy = r.total ? double(r.correct) / double(r.total) : 0.0;
  double f1_sum = 0;
  for (int64_t c = 0; c < num_classes; ++c) {
    int64_t tp = r.confusion[c][c], row = 0, col = 0;
    for (int64_t k = 0; k < num_classes; ++k) {
      row += r.confusion[c][k];
      col += r.confusion[k][c];
    }
    double rec = row ? double(tp) / double(row) : 0.0;
    double prec = col ? double(tp) / double(col) : 0.0;
    double f1 = prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0.0;
    r.support.push_back(row);
    r.recall.push_back(rec);
    r.class_accuracy.push_back(rec);
    r.precision.push_back(prec);
    r.f1.push_back(f1);
    f1_sum += f1;
  }
  r.macro_f1 = f1_sum / double(num_classes);
  return r;
}

std::string per_class_csv(const ClassificationReport& r) {
  std::string s = "class,accuracy,precision,recall,f1,support\n";
  for (int64_t c = 0; c < r.num_classes; ++c)
    s += fmt::format("{},{:.6f},{:.6f},{:.6f},{:.6f},{}\n", c, r.class_accuracy[c], r.precision[c],
                     r.recall[c], r.f1[c], r.support[c]);
  return s;
}

std::string confusion_csv(const ClassificationReport& r) {
  std::string s = "true\\pred";
  for (int64_t c = 0; c < r.num_classes; ++c) s += fmt::format(",{}", c);
  s += "\n";
  for (int64_t t = 0; t < r.num_classes; ++t) {
    s += fmt::format("{}", t);
    for (int64_t p = 0; p < r.num_classes; ++p) s += fmt::format(",{}", r.confusion[t][p]);
    s += "\n";
  }
  return s;
}

std::string misclassified_csv(const ClassificationReport& r, const std::vector<int64_t>& truth,
                              const std::vector<int64_t>& pred) {
  std::string s = "index,true,pred\n";
  for (int64_t i : r.misclassified) s += fmt::format("{},{},{}\n", i, truth[i], pred[i]);
  return s;
}

}  // namespace gl::train
