// conv.h: 2-D convolution on the GPU as an implicit GEMM (no cuDNN, no im2col buffer), NCHW
// f32, its gradients, and pooling. The same geometry struct as the CPU kernels
// (kernels/cpu/conv.h).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cpu/conv.h"

namespace gl::kernels::cuda {

using cpu::ConvGeometry;

// out [n, oc, oh, ow] = conv(x, weight) + bias (bias may be null). Per group, the GEMM
// Y[oc/g, n*oh*ow] = W[oc/g, K] @ col[K, n*oh*ow] with the col element (k, p) gathered from x
// on the fly while the tile is loaded into shared memory.
void conv2d_forward(const ConvGeometry& g, const float* x, const float* weight, const float* bias,
                    float* out, cudaStream_t stream = nullptr);
// The gradients of conv2d_forward for the output gradient dy [n, oc, oh, ow]: dx [n, c, h, w],
// dw [oc, c / groups, kh, kw] and db [oc], each overwritten, each skipped when null. Every
// element is summed in a fixed order (no atomics): the same bits from run to run. dx and dw are
// tiled implicit GEMMs (kernels/cuda/conv_tiles.h), db a gather.
void conv2d_backward(const ConvGeometry& g, const float* x, const float* weight, const float* dy,
                     float* dx, float* dw, float* db, cudaStream_t stream = nullptr);

using cpu::PoolGeometry;
// Pooling over g.planes planes [h, w] as the CPU kernels do (kernels/cpu/conv.h): the same
// windows, first-maximum and NaN rules, argmax as each output's flat index in its plane, and
// average pooling's kh * kw divisor; the backward passes gather per input in output order.
void max_pool2d_forward(const PoolGeometry& g, const float* x, float* out, int32_t* argmax,
                        cudaStream_t stream = nullptr);
void max_pool2d_backward(const PoolGeometry& g, const float* dy, const int32_t* argmax, float* dx,
                         cudaStream_t stream = nullptr);
void avg_pool2d_forward(const PoolGeometry& g, const float* x, float* out,
                        cudaStream_t stream = nullptr);
void avg_pool2d_backward(const PoolGeometry& g, const float* dy, float* dx,
                         cudaStream_t stream = nullptr);
void adaptive_avg_pool2d_forward(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                 const float* x, float* out, cudaStream_t stream = nullptr);
void adaptive_avg_pool2d_backward(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                  const float* dy, float* dx, cudaStream_t stream = nullptr);

}  // namespace gl::kernels::cuda
