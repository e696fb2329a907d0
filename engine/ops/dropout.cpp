// dropout.cpp: inverted dropout with a Philox mask: element i of the draw is dropped when
// uniform(seed, offset + i) < p, the same rule the CUDA kernel applies.
#include "engine/ops.h"
#include "engine/ops/map.h"
#include "kernels/functors.h"
#include "kernels/philox.h"

namespace gl {

Tensor dropout(const Tensor& x, double p, Generator& gen, bool training) {
  GL_CHECK(p >= 0.0 && p < 1.0, "dropout: probability {} outside [0, 1)", p);
  if (!training || p == 0.0) return x;
#if defined(GRADLENS_HAVE_CUDA)
  if (detail::on_cuda(x))
    cuda_ops::check_device_float(x, "dropout");
  else
#endif
    detail::check_float_cpu(x, "dropout");
  int64_t n = x.numel();
  uint64_t off = gen.advance(uint64_t(n));
  uint64_t seed = gen.seed();
  Tensor mask;
#if defined(GRADLENS_HAVE_CUDA)
  // The same Philox draw on the device: element i of the mask is bit-identical to the CPU's.
  if (detail::on_cuda(x))
    mask = cuda_ops::dropout_mask(x.shape(), x.dtype(), x.device(), seed, off, p);
#endif
  if (!mask.defined()) {
    mask = Tensor::empty(x.shape(), x.dtype());
    double keep_scale = 1.0 / (1.0 - p);
    detail::dispatch_float(x.dtype(), "dropout", [&](auto tag) {
      using T = decltype(tag);
      T* m = static_cast<T*>(mask.raw_data());
      loops::parallel_for(n, n, [&](int64_t i) {
        m[i] = philox::uniform_at(seed, off, uint64_t(i)) < p ? T(0) : T(keep_scale);
      });
      return 0;
    });
  }
  Tensor out = detail::binary_map(x, mask, fn::Mul{}, "dropout");
  if (needs_grad({&x})) {
    attach_grad_fn(out, "dropout", {x},
                   [mask](const Tensor& g) -> std::vector<Tensor> { return {mul(g, mask)}; },
                   {x.shape()});
  }
  return out;
}

}  // namespace gl
