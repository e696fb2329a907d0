// conv.h: CPU kernels of the convolutional ops on NCHW arrays (row-major, contiguous):
// 2-D convolution (stride, padding, dilation, groups, bias) by im2col + our packed GEMM, max
// and average pooling, adaptive average pooling. f32 and f64 (the f64 path serves gradcheck).
// Threads: OpenMP, like the GEMM.
#pragma once
#include <cstdint>

namespace gl::kernels::cpu {

// Geometry of one convolution: input [n, c, h, w], weight [oc, c / groups, kh, kw].
struct ConvGeometry {
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t oc = 0, kh = 1, kw = 1;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  int64_t groups = 1;
  int64_t out_h() const { return (h + 2 * pad_h - dil_h * (kh - 1) - 1) / stride_h + 1; }
  int64_t out_w() const { return (w + 2 * pad_w - dil_w * (kw - 1) - 1) / stride_w + 1; }
};

// How conv2d lowers to the GEMM (process-wide; all give the same values up to rounding):
// per_image: threads take whole images, each image's im2col stays in cache and its GEMMs
// write NCHW directly; batched: one im2col matrix of a chunk of images and one GEMM per group
// over all of them, threads inside the GEMM; winograd: Winograd F(m x m, 3x3), m = 2 to 5
// (winograd.h, the tile picked by output size) for f32 wherever it applies, per_image
// elsewhere; direct: the direct AVX-512 kernel of conv_direct.h where direct_conv_preferred,
// per_image elsewhere; automatic (the default): winograd where winograd_preferred, else direct
// where direct_conv_preferred, else per_image. bench_conv --algo compares them.
enum class ConvAlgo { automatic, per_image, batched, winograd, direct };
void set_conv_algo(ConvAlgo algo);
ConvAlgo conv_algo();

// out [n, oc, oh, ow] = conv(x, weight) + bias (bias may be null).
void conv2d_forward(const ConvGeometry& g, const float* x, const float* weight, const float* bias,
                    float* out);
void conv2d_forward(const ConvGeometry& g, const double* x, const double* weight,
                    const double* bias, double* out);
// Gradients of conv2d_forward; each output pointer may be null (not wanted). They are
// overwritten, not accumulated.
void conv2d_backward(const ConvGeometry& g, const float* x, const float* weight,
                     const float* grad_out, float* grad_x, float* grad_weight, float* grad_bias);
void conv2d_backward(const ConvGeometry& g, const double* x, const double* weight,
                     const double* grad_out, double* grad_x, double* grad_weight,
                     double* grad_bias);
// db[o] = sum of dy[n, o, p] over images n and positions p < P (each plane summed in f32 lanes,
// the planes in f64, in a fixed order: the result does not depend on the thread count).
void conv2d_bias_grad(int64_t n, int64_t oc, int64_t P, const float* dy, float* db);
// The naive 7-loop definition (the test oracle of conv2d_forward).
void conv2d_reference(const ConvGeometry& g, const double* x, const double* weight,
                      const double* bias, double* out);

// Pooling over `planes` = n * c independent [h, w] planes.
struct PoolGeometry {
  int64_t planes = 0, h = 0, w = 0;
  int64_t kh = 1, kw = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int64_t out_h() const { return (h + 2 * pad_h - kh) / stride_h + 1; }
  int64_t out_w() const { return (w + 2 * pad_w - kw) / stride_w + 1; }
};

// Max pooling (padding never wins); argmax holds each output's flat index in its input plane.
void max_pool2d_forward(const PoolGeometry& g, const float* x, float* out, int32_t* argmax);
void max_pool2d_forward(const PoolGeometry& g, const double* x, double* out, int32_t* argmax);
// grad_x (overwritten) = scatter of grad_out to the argmax positions.
void max_pool2d_backward(const PoolGeometry& g, const float* grad_out, const int32_t* argmax,
                         float* grad_x);
void max_pool2d_backward(const PoolGeometry& g, const double* grad_out, const int32_t* argmax,
                         double* grad_x);
// Average pooling; padding counts as zeros in a kh*kw divisor (PyTorch's count_include_pad).
void avg_pool2d_forward(const PoolGeometry& g, const float* x, float* out);
void avg_pool2d_forward(const PoolGeometry& g, const double* x, double* out);
void avg_pool2d_backward(const PoolGeometry& g, const float* grad_out, float* grad_x);
void avg_pool2d_backward(const PoolGeometry& g, const double* grad_out, double* grad_x);
// Adaptive average pooling to [oh, ow]: output (i, j) averages rows floor(i h / oh) ..
// ceil((i + 1) h / oh) - 1 and the same for columns (PyTorch's bins).
void adaptive_avg_pool2d_forward(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                 const float* x, float* out);
void adaptive_avg_pool2d_forward(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                 const double* x, double* out);
void adaptive_avg_pool2d_backward(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                  const float* grad_out, float* grad_x);
void adaptive_avg_pool2d_backward(int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                  const double* grad_out, double* grad_x);

}  // namespace gl::kernels::cpu
