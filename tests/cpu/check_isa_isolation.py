#!/usr/bin/env python3
"""tests/cpu/check_isa_isolation.py: no shared symbol of a per-ISA object carries SIMD code.

A per-ISA file (src/cpu/isa/avx2.cpp, avx512.cpp) compiles its own code for a newer ISA than the
baseline. Any function it emits with *vague linkage* (inline functions, template instantiations:
nm types W, V, u) may be the one copy the linker keeps for the whole program, so a baseline path
that calls it (where the call is not inlined, e.g. in a Debug build) could run AVX or AVX-512
instructions on a CPU that lacks them (SIGILL). This check disassembles every such function in the
given objects and fails if one uses a VEX- or EVEX-encoded instruction (mnemonics starting with
'v', ymm/zmm registers, opmask registers) -- the baseline x86-64 code the rest of the library is
built for uses neither. Run it on objects compiled without optimisation, where nothing is inlined.

usage: check_isa_isolation.py OBJECT...   (exit 0: clean, 1: a hazard, 2: usage or tool error)
"""
import re
import shutil
import subprocess
import sys

SIMD = re.compile(r"\s(v[a-z0-9]+)\s|%[yz]mm\d+|%k[0-7]\b")
FUNC = re.compile(r"^[0-9a-f]+ <(.+)>:$")


def vague_symbols(obj):
    out = subprocess.run(["nm", "--defined-only", obj], capture_output=True, text=True, check=True).stdout
    return {p[2] for p in (l.split() for l in out.splitlines()) if len(p) == 3 and p[1] in ("W", "V", "u")}


def simd_functions(obj, names):
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", obj], capture_output=True, text=True, check=True).stdout
    found, current = {}, None
    for line in out.splitlines():
        m = FUNC.match(line)
        if m:
            current = m.group(1)
        elif current in names and current not in found and SIMD.search(line):
            found[current] = line.strip()
    return found


def main(objects):
    if not objects:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    for tool in ("nm", "objdump"):
        if shutil.which(tool) is None:
            print(f"check_isa_isolation: {tool} not found (binutils)", file=sys.stderr)
            return 2
    bad = 0
    for obj in objects:
        names = vague_symbols(obj)
        hazards = simd_functions(obj, names)
        print(f"{obj}: {len(names)} shared (vague-linkage) symbols, {len(hazards)} with SIMD code")
        for name, insn in sorted(hazards.items()):
            demangled = subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip() or name
            print(f"  HAZARD {demangled}: {insn}")
            bad += 1
    if bad:
        print(f"check_isa_isolation: {bad} shared function(s) carry SIMD code; include headers above the file's "
              "'#pragma GCC target' and keep ISA code in the file's own namespace", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
