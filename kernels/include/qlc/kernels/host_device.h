// Marks functions whose arithmetic is shared by the scalar reference, the fast CPU path and the
// CUDA kernels: one definition, compiled for host and device alike.
#pragma once

#if defined(__CUDACC__)
#define QLC_HD __host__ __device__ __forceinline__
#else
#define QLC_HD inline
#endif

// Unrolling hint for device code only: the host compiler of a .cu file would warn about it.
#if defined(__CUDA_ARCH__)
#define QLC_UNROLL _Pragma("unroll")
#else
#define QLC_UNROLL
#endif
