# CUDA kernels are compiled for every architecture the project supports (CUDA 13 nvcc dropped
# everything below sm_75): QLC_CUDA_ARCHITECTURES, from -DCMAKE_CUDA_ARCHITECTURES=... on the first
# configure (a quicker local build) or -DQLC_CUDA_ARCHITECTURES=..., else this list. It is set
# unconditionally: a CUDA LibTorch's TorchConfig has by now cached nvcc's one default architecture
# and set CMAKE_CUDA_ARCHITECTURES to OFF. ci/tests/cuda_build_without_gpu.sh checks the result.
set(QLC_DEFAULT_CUDA_ARCHITECTURES 75 80 86 89 90 100 120)
if(QLC_CMDLINE_CUDA_ARCHITECTURES)
  set(_qlc_archs "${QLC_CMDLINE_CUDA_ARCHITECTURES}")
else()
  set(_qlc_archs "${QLC_DEFAULT_CUDA_ARCHITECTURES}")
endif()
set(QLC_CUDA_ARCHITECTURES "${_qlc_archs}" CACHE STRING "Architectures the CUDA kernels are compiled for")
set(CMAKE_CUDA_ARCHITECTURES ${QLC_CUDA_ARCHITECTURES})
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
