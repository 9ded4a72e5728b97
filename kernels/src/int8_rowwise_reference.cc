#include <vector>

#include "qlc/kernels/int8_rowwise.h"

namespace qlc::kernels {

template <class In>
int64_t quantize_int8_rowwise_reference(const In* x, int64_t rows, int64_t cols, float threshold,
                                        int8_t* q, float* row_stats, int64_t* outlier_cols) {
  // Pass 1: which columns hold an outlier (bitsandbytes: `outliers.any(dim=0)`).
  std::vector<uint8_t> is_outlier_col(static_cast<size_t>(cols), 0);
  int64_t outlier_count = 0;
  if (threshold > 0.0f) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        if (is_int8_outlier(to_float(x[r * cols + c]), threshold)) is_outlier_col[c] = 1;
    for (int64_t c = 0; c < cols; ++c)
      if (is_outlier_col[c]) outlier_cols[outlier_count++] = c;
  }
  // Pass 2: per row, the absmax over the elements that are not outliers themselves (a non-outlier
  // element of an outlier column still counts, as in bitsandbytes), then the codes; outlier
  // columns are zeroed whole.
  for (int64_t r = 0; r < rows; ++r) {
    const In* row = x + r * cols;
    float absmax = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = to_float(row[c]);
      if (!is_int8_outlier(v, threshold)) absmax = absmax_nan_propagating(absmax, v);
    }
    row_stats[r] = absmax;
    const float scale = int8_row_scale(absmax);
    for (int64_t c = 0; c < cols; ++c) {
      q[r * cols + c] = is_outlier_col[c] ? int8_t{0} : quantize_int8_value(to_float(row[c]), scale);
    }
  }
  return outlier_count;
}

template <class Out>
void dequantize_int8_rowwise_reference(const int8_t* q, const float* row_stats, int64_t rows,
                                       int64_t cols, Int8DequantOrder order, Out* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      out[r * cols + c] = from_float<Out>(dequantize_int8_value(q[r * cols + c], row_stats[r], order));
}

void int8_gemm_reference(const int8_t* a, const int8_t* b, int64_t m, int64_t n, int64_t k,
                         int32_t* out) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int32_t acc = 0;  // |acc| <= 128 * 128 * k: exact for k < 131072
      for (int64_t t = 0; t < k; ++t)
        acc += static_cast<int32_t>(a[i * k + t]) * static_cast<int32_t>(b[j * k + t]);
      out[i * n + j] = acc;
    }
}

template <class T>
void int8_linear_forward_reference(const T* x, int64_t rows, int64_t in_features, const int8_t* cb,
                                   const float* scb, int64_t out_features, const T* bias,
                                   float threshold, T* out) {
  const int64_t k = in_features;
  // MatMul8bitLt quantizes `A.to(torch.float16)`, whatever the input dtype.
  std::vector<Fp16> x16(static_cast<size_t>(rows * k));
  for (int64_t i = 0; i < rows * k; ++i) x16[i] = to_fp16(to_float(x[i]));
  std::vector<int8_t> ca(static_cast<size_t>(rows * k));
  std::vector<float> sca(static_cast<size_t>(rows));
  std::vector<int64_t> cols(static_cast<size_t>(k));
  const int64_t n_outliers =
      quantize_int8_rowwise_reference(x16.data(), rows, k, threshold, ca.data(), sca.data(), cols.data());

  std::vector<int32_t> acc(static_cast<size_t>(rows * out_features));
  int8_gemm_reference(ca.data(), cb, rows, out_features, k, acc.data());

  // The outlier weight columns, dequantized (vectorwise order) and rounded to T: subB[j, t].
  std::vector<float> sub_b(static_cast<size_t>(out_features * n_outliers));
  for (int64_t j = 0; j < out_features; ++j)
    for (int64_t t = 0; t < n_outliers; ++t)
      sub_b[j * n_outliers + t] = to_float(from_float<T>(
          dequantize_int8_value(cb[j * k + cols[t]], scb[j], Int8DequantOrder::kVectorwise)));

  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < out_features; ++j) {
      float y = int8_mm_dequant_value(acc[i * out_features + j], sca[i], scb[j]);
      if (bias != nullptr) y = y + to_float(bias[j]);
      T result = from_float<T>(y);
      if (n_outliers > 0) {
        float extra = 0.0f;
        for (int64_t t = 0; t < n_outliers; ++t)
          extra = extra + to_float(x[i * k + cols[t]]) * sub_b[j * n_outliers + t];
        result = from_float<T>(to_float(result) + extra);
      }
      out[i * out_features + j] = result;
    }
}

#define QLC_INSTANTIATE_INT8(T)                                                                   \
  template int64_t quantize_int8_rowwise_reference<T>(const T*, int64_t, int64_t, float, int8_t*, \
                                                      float*, int64_t*);                          \
  template void dequantize_int8_rowwise_reference<T>(const int8_t*, const float*, int64_t,        \
                                                     int64_t, Int8DequantOrder, T*);              \
  template void int8_linear_forward_reference<T>(const T*, int64_t, int64_t, const int8_t*,       \
                                                 const float*, int64_t, const T*, float, T*);
QLC_INSTANTIATE_INT8(float)
QLC_INSTANTIATE_INT8(Bf16)
QLC_INSTANTIATE_INT8(Fp16)
#undef QLC_INSTANTIATE_INT8

}  // namespace qlc::kernels
