// bench/isa_peak.hpp: peak-measuring loops (bench/isa_peak.cpp), one per arithmetic a CPU kernel
// of src/cpu/isa/ runs on. x86-64 only; call each only where the CPU has its ISA
// (isa_peak_supported).
#pragma once

namespace hyperattn::bench {

// The arithmetic whose peak a kernel's FLOPs are held against.
enum class PeakLoop {
  avx2_fma_f32,     // vfmadd231ps ymm: 12 independent accumulators, 16 FLOP per instruction
  avx512_fma_f32,   // vfmadd231ps zmm: 12 independent accumulators, 32 FLOP per instruction
  avx512_dpbf16,    // vdpbf16ps zmm: 12 independent accumulators, 64 FLOP per instruction
};

const char* peak_loop_name(PeakLoop loop);
bool isa_peak_supported(PeakLoop loop);  // whether this CPU has the loop's instructions
double flops_per_iteration(PeakLoop loop);
// Runs `iterations` iterations; returns a value derived from the accumulators (so the loop is
// not removed).
double run_peak_loop(PeakLoop loop, long iterations);

}  // namespace hyperattn::bench
