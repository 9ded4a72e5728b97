# Use ccache when it is installed: every CI run rebuilds from a clean checkout.
find_program(QLC_CCACHE ccache)
if(QLC_CCACHE)
  set(CMAKE_C_COMPILER_LAUNCHER ${QLC_CCACHE})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${QLC_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${QLC_CCACHE})
endif()
