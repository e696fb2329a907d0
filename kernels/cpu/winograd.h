// winograd.h: Winograd F(m x m, 3x3) convolution, m = 2 to 5, on the CPU, f32
// (kernels/cpu/winograd.cpp). conv2d_forward/backward (conv.h) route here for the shapes where it
// is the faster lowering.
#pragma once
#include "kernels/cpu/conv.h"

namespace gl::kernels::cpu {

// 3x3 kernel, stride 1, dilation 1, one group, padding 0 to 2.
bool winograd_applies(const ConvGeometry& g);
// winograd_applies and enough channels on both sides for its GEMMs to pay (measured with
// bench/bench_conv --algo).
bool winograd_preferred(const ConvGeometry& g);

// The output tile edge m of F(m x m, 3 x 3) for g: 5 (49 products per 25 outputs), 4 (36 per
// 16), 3 (25 per 9) or 2 (16 per 4, the smallest rounding errors), whichever needs the fewest
// products weighted by the transforms' cost.
int winograd_tile(const ConvGeometry& g);
// Forces the tile (2, 3, 4 or 5) for later calls, or 0 for winograd_tile's own choice (tests, and
// bench_conv --winograd-tile); anything else throws std::invalid_argument.
void set_winograd_tile(int m);

// Same contracts as conv2d_forward / conv2d_backward, for geometries where winograd_applies.
void winograd_conv2d_forward(const ConvGeometry& g, const float* x, const float* w,
                             const float* bias, float* out);
void winograd_conv2d_backward(const ConvGeometry& g, const float* x, const float* w,
                              const float* dy, float* dx, float* dw, float* db);

}  // namespace gl::kernels::cpu
