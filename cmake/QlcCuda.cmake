# CUDA kernels are compiled for every architecture the project supports (CUDA 13 nvcc dropped
# everything below sm_75). Override with -DCMAKE_CUDA_ARCHITECTURES=... for a quicker local build.
# Set unconditionally (not only when undefined): a CUDA LibTorch's TorchConfig has set it to OFF
# by now, which would leave the kernels with nvcc's one default architecture.
if(QLC_USER_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES ${QLC_USER_CUDA_ARCHITECTURES})
else()
  set(CMAKE_CUDA_ARCHITECTURES 75 80 86 89 90 100 120)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
