#include <algorithm>
#include <array>
#include <vector>

#include "qlc/kernels/blockwise_8bit.h"
#include "qlc/kernels/double_quant.h"

namespace qlc::kernels {
namespace {

constexpr int kMaxLanes = 16;
using Lanes = std::array<float, kMaxLanes>;

int ceil_log2(int64_t x) {
  int r = 0;
  while ((int64_t{1} << r) < x) ++r;
  return r;
}

// LibTorch's multi_row_sum: `rows` interleaved accumulators of `lanes` floats each, cascaded over
// four levels so that rounding error grows with log(n) rather than n.
template <int kRows>
std::array<Lanes, kRows> multi_row_sum(const float* x, int64_t row_stride, int64_t col_stride,
                                       int64_t size, int lanes) {
  constexpr int kLevels = 4;
  const int level_power = std::max(4, ceil_log2(size) / kLevels);
  const int64_t level_step = int64_t{1} << level_power;
  const int64_t level_mask = level_step - 1;
  std::array<std::array<Lanes, kRows>, kLevels> acc{};
  auto add_row = [&](std::array<Lanes, kRows>& dst, int64_t i) {
    for (int r = 0; r < kRows; ++r)
      for (int l = 0; l < lanes; ++l) dst[r][l] += x[i * row_stride + r * col_stride + l];
  };
  int64_t i = 0;
  while (i + level_step <= size) {
    for (int64_t j = 0; j < level_step; ++j, ++i) add_row(acc[0], i);
    for (int j = 1; j < kLevels; ++j) {
      for (int r = 0; r < kRows; ++r)
        for (int l = 0; l < lanes; ++l) {
          acc[j][r][l] += acc[j - 1][r][l];
          acc[j - 1][r][l] = 0.0f;
        }
      if ((i & (level_mask << (j * level_power))) != 0) break;
    }
  }
  for (; i < size; ++i) add_row(acc[0], i);
  for (int j = 1; j < kLevels; ++j)
    for (int r = 0; r < kRows; ++r)
      for (int l = 0; l < lanes; ++l) acc[0][r][l] += acc[j][r][l];
  return acc[0];
}

// LibTorch's row_sum: the row read as (-1, 4) groups of `lanes`-wide elements.
Lanes row_sum(const float* x, int64_t size, int lanes) {
  constexpr int kIlp = 4;
  const int64_t size_ilp = size / kIlp;
  auto partial = multi_row_sum<kIlp>(x, kIlp * lanes, lanes, size_ilp, lanes);
  for (int64_t i = size_ilp * kIlp; i < size; ++i)
    for (int l = 0; l < lanes; ++l) partial[0][l] += x[i * lanes + l];
  for (int k = 1; k < kIlp; ++k)
    for (int l = 0; l < lanes; ++l) partial[0][l] += partial[k][l];
  return partial[0];
}

}  // namespace

float torch_cpu_mean(const float* x, int64_t n, int lanes) {
  float sum = 0.0f;
  if (n >= lanes) {  // vectorized_inner_sum
    const int64_t vec_count = n / lanes;
    const Lanes vec = row_sum(x, vec_count, lanes);
    for (int64_t k = vec_count * lanes; k < n; ++k) sum += x[k];
    for (int l = 0; l < lanes; ++l) sum += vec[l];
  } else {  // scalar_inner_sum
    sum = row_sum(x, n, 1)[0];
  }
  return sum / static_cast<float>(n);
}

void double_quantize_reference(const float* absmax, int64_t blocks, float offset, uint8_t* qabsmax,
                               float* absmax2, const DynamicMap8& map) {
  std::vector<float> centred(static_cast<size_t>(blocks));
  for (int64_t i = 0; i < blocks; ++i) centred[i] = absmax[i] - offset;
  quantize_8bit_reference(centred.data(), blocks, kDoubleQuantBlocksize, map,
                          Search8::kBnbCpuLibrary, qabsmax, absmax2);
}

void restore_absmax_reference(const uint8_t* qabsmax, const float* absmax2, float offset,
                              int64_t blocks, float* absmax_out, const DynamicMap8& map) {
  for (int64_t i = 0; i < blocks; ++i) {
    absmax_out[i] = decode_8bit(map, qabsmax[i], absmax2[i / kDoubleQuantBlocksize]) + offset;
  }
}

}  // namespace qlc::kernels
