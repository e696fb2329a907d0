// network.cpp: the parts of a classifier shared by the MLP and CNN builders.
#include "models/network.h"

namespace gl::models {

void Network::reset_parameters(Generator& gen) {
  for (auto& tap : taps_) {
    if (tap.linear) tap.linear->reset_parameters(gen);
    if (tap.conv) tap.conv->reset_parameters(gen);
    if (tap.batchnorm) tap.batchnorm->reset_parameters();
  }
  output_->reset_parameters(gen);
}

}  // namespace gl::models
