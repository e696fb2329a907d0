// conv_direct.h: direct AVX-512 convolution for layers with few input channels, f32
// (kernels/cpu/conv_direct.cpp). conv2d_forward/backward (conv.h) route here where it is the
// faster lowering.
#pragma once
#include "kernels/cpu/conv.h"

namespace gl::kernels::cpu {

// The CPU runs the AVX-512 kernels (cpu::isa_name() is "avx512"); 3x3 or 5x5 kernel, stride 1,
// dilation 1, one group, at most 4 input channels.
bool direct_conv_preferred(const ConvGeometry& g);

// Same contract as conv2d_forward, where direct_conv_preferred.
void direct_conv2d_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias,
                           float* out);
// dw and db (overwritten; db may be null) = the weight and bias gradients of conv2d_forward for
// the output gradient dy.
void direct_conv2d_weight_grad(const ConvGeometry& g, const float* x, const float* dy, float* dw,
                               float* db);

}  // namespace gl::kernels::cpu
