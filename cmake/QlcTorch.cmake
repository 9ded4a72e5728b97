# Finds LibTorch. In order of preference:
#  1. whatever CMAKE_PREFIX_PATH / Torch_DIR already point at (Debian's libtorch-dev is found this
#     way with no hint at all, since it installs into /usr);
#  2. the LibTorch inside the PyTorch wheel of QLC_PYTHON (default: the project's .venv), which is
#     how users with a CUDA PyTorch build against the LibTorch they already have.
set(QLC_PYTHON "${PROJECT_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH
    "Python whose torch package provides LibTorch (ignored if Torch_DIR is set)")
option(QLC_USE_SYSTEM_TORCH "Prefer a LibTorch on the system (Debian's libtorch-dev) over the venv's" OFF)

if(NOT Torch_DIR AND NOT QLC_USE_SYSTEM_TORCH AND EXISTS "${QLC_PYTHON}")
  execute_process(
    COMMAND "${QLC_PYTHON}" -c "import torch; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _qlc_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _qlc_torch_rc ERROR_QUIET)
  if(_qlc_torch_rc EQUAL 0 AND _qlc_torch_prefix)
    list(PREPEND CMAKE_PREFIX_PATH "${_qlc_torch_prefix}")
    # TorchConfig looks its libraries up with PATHS, which come after the system's folders: with
    # Debian's libtorch-dev installed, libc10.so would come from /usr/lib and the binaries abort
    # at start-up (two c10 in one process). The wheel's lib/ first, then.
    get_filename_component(_qlc_torch_lib "${_qlc_torch_prefix}/../../lib" ABSOLUTE)
    list(PREPEND CMAKE_LIBRARY_PATH "${_qlc_torch_lib}")
    # A CUDA wheel brings its CUDA libraries as wheels of their own (site-packages/nvidia/cu13/
    # lib, versioned names only). TorchConfig asks for libnvrtc, which a compiler-only CUDA
    # toolkit lacks: take the wheel's, the one LibTorch itself loads.
    file(GLOB _qlc_nvrtc "${_qlc_torch_prefix}/../../../nvidia/cu*/lib/libnvrtc.so.[0-9]*")
    if(_qlc_nvrtc AND NOT CUDA_nvrtc_LIBRARY)
      list(GET _qlc_nvrtc 0 _qlc_nvrtc)
      get_filename_component(_qlc_nvrtc "${_qlc_nvrtc}" ABSOLUTE)
      set(CUDA_nvrtc_LIBRARY "${_qlc_nvrtc}" CACHE FILEPATH "libnvrtc of the CUDA LibTorch's wheel")
    endif()
  endif()
endif()

# A CUDA LibTorch's TorchConfig appends its own nvcc flags to CMAKE_CUDA_FLAGS, among them
# -gencode for TORCH_CUDA_ARCH_LIST's guess (sm_50, which CUDA 13 rejects, and the "a" variants).
# The kernels are no PyTorch extension (their launch header exposes no CUDA or LibTorch type), so
# they keep the project's own flags and architectures (QlcCuda.cmake).
set(_qlc_cuda_flags_before_torch "${CMAKE_CUDA_FLAGS}")
find_package(Torch REQUIRED)
set(CMAKE_CUDA_FLAGS "${_qlc_cuda_flags_before_torch}")
# LibTorch 2.14's headers use C++20 (operator<=>, requires-clauses). The project's code is C++17
# and compiles unchanged as C++20: take the standard the LibTorch needs.
if(Torch_VERSION VERSION_GREATER_EQUAL 2.14)
  set(CMAKE_CXX_STANDARD 20)
endif()
# Every LibTorch library must come from the folder libtorch.so was found in (see above).
get_filename_component(_qlc_want_dir "${TORCH_LIBRARY}" DIRECTORY)
get_filename_component(_qlc_want_dir "${_qlc_want_dir}" REALPATH)
foreach(_qlc_lib IN LISTS TORCH_LIBRARIES)
  if(IS_ABSOLUTE "${_qlc_lib}" AND _qlc_lib MATCHES "/lib(c10|torch)[^/]*\\.so$")
    get_filename_component(_qlc_lib_dir "${_qlc_lib}" DIRECTORY)
    get_filename_component(_qlc_lib_dir "${_qlc_lib_dir}" REALPATH)
    if(NOT _qlc_lib_dir STREQUAL _qlc_want_dir)
      message(FATAL_ERROR "qlora-compat: ${_qlc_lib} does not belong to the LibTorch of "
              "${TORCH_LIBRARY}; clear the cache (rm -r the build folder) or set "
              "c10_LIBRARY to that LibTorch's libc10.so")
    endif()
  endif()
endforeach()
