# Cross-compiling hyperattn for aarch64 (arm64) Linux on a Debian x86-64 host, with Debian's cross
# compilers (g++-aarch64-linux-gnu) and the arm64 -dev packages installed through multiarch
# (dpkg --add-architecture arm64; libfmt-dev:arm64 ...), which live in /usr/lib/aarch64-linux-gnu.
# The test binaries run under qemu-user: ctest and gtest_discover_tests go through
# CMAKE_CROSSCOMPILING_EMULATOR. scripts/cross-aarch64.sh installs all of it and uses this file:
#   cmake -S . -B build-aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(HYPERATTN_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${HYPERATTN_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${HYPERATTN_CROSS_TRIPLE}-g++)

# Debian multiarch: the toolchain's own libc and libstdc++ in /usr/aarch64-linux-gnu, the arm64
# libraries (fmt, GoogleTest, OpenBLAS, sentencepiece) in /usr/lib/aarch64-linux-gnu, headers and
# architecture-independent CMake packages (nlohmann_json, CLI11) in /usr/include and /usr/share.
# CMAKE_LIBRARY_ARCHITECTURE makes find_library/find_package look in lib/aarch64-linux-gnu; the
# root path puts the cross toolchain's own tree first; the host's x86-64 multiarch folders are
# ignored, so that nothing built for the host can be picked up.
set(CMAKE_LIBRARY_ARCHITECTURE ${HYPERATTN_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH /usr/${HYPERATTN_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)  # host tools (python3, objdump) are host programs
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(CMAKE_IGNORE_PATH /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/cmake
    /usr/local/lib/x86_64-linux-gnu)

# pkg-config (OpenBLAS): only the arm64 .pc files and the architecture-independent ones.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${HYPERATTN_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# Run target binaries (tests, test discovery) under user-mode QEMU. -L points it at the cross
# toolchain's dynamic loader (/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1), and LD_LIBRARY_PATH
# at the libc, libstdc++ and libgcc_s built with it: the loader's default search path would find the
# libc6:arm64 that the arm64 -dev packages pull into /lib/aarch64-linux-gnu, whose glibc build
# differs from the loader's, and a program that mixes the two hangs in its first pthread_create
# (seen: every threaded test, and OpenBLAS's start-up). The multiarch libraries (OpenBLAS, fmt,
# sentencepiece) come from /usr/lib/aarch64-linux-gnu as usual. HYPERATTN_TEST_EMULATOR tells the
# one test that depends on an emulator limit (PlotTest.ReportsMissingGnuplot) to skip.
find_program(HYPERATTN_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(HYPERATTN_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${HYPERATTN_QEMU_AARCH64} -L /usr/${HYPERATTN_CROSS_TRIPLE}
      -E LD_LIBRARY_PATH=/usr/${HYPERATTN_CROSS_TRIPLE}/lib -E HYPERATTN_TEST_EMULATOR=qemu-user)
endif()
