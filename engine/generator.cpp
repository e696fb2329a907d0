// generator.cpp: scalar draws from the Philox stream.
#include "engine/generator.h"

#include <cmath>

#include "kernels/philox.h"

namespace gl {

double Generator::uniform() { return philox::uniform_at(seed_, advance(1), 0); }
double Generator::normal() { return philox::normal_at(seed_, advance(1), 0); }
uint64_t Generator::below(uint64_t n) {
  if (n <= 1) return 0;
  // 53 random bits are plenty for the dataset sizes shuffled here; floor keeps it < n.
  auto v = uint64_t(std::floor(uniform() * double(n)));
  return v < n ? v : n - 1;
}

}  // namespace gl
