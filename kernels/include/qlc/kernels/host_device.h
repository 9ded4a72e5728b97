// Marks functions whose arithmetic is shared by the scalar reference, the fast CPU path and the
// CUDA kernels: one definition, compiled for host and device alike.
#pragma once

#if defined(__CUDACC__)
#define QLC_HD __host__ __device__ __forceinline__
#define QLC_UNROLL _Pragma("unroll")
#else
#define QLC_HD inline
#define QLC_UNROLL
#endif
