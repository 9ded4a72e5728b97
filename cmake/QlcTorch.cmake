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
  endif()
endif()

find_package(Torch REQUIRED)
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
