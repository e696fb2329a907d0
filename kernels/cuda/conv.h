// conv.h: 2-D convolution on the GPU as an implicit GEMM (no cuDNN, no im2col buffer), NCHW
// f32. The same geometry struct as the CPU kernels (kernels/cpu/conv.h).
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

}  // namespace gl::kernels::cuda
