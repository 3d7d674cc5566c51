# The SIMD kernel variants (on x86 each file sets its own target ISA with #pragma GCC target; the
# kernel table in cpu/kernel_table.cpp picks one at run time with __builtin_cpu_supports).
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  target_sources(hyperattn_cpu PRIVATE
    ${CMAKE_CURRENT_LIST_DIR}/avx2.cpp
    ${CMAKE_CURRENT_LIST_DIR}/avx512.cpp
    ${CMAKE_CURRENT_LIST_DIR}/avx512_nobf16.cpp)
  target_compile_definitions(hyperattn_cpu PRIVATE HYPERATTN_X86_KERNELS=1)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64|ARM64")
  # NEON is part of every AArch64 CPU: no pragma, and the kernel table offers it unconditionally.
  target_sources(hyperattn_cpu PRIVATE ${CMAKE_CURRENT_LIST_DIR}/neon.cpp)
  target_compile_definitions(hyperattn_cpu PRIVATE HYPERATTN_NEON_KERNELS=1)
endif()
