#!/usr/bin/env python3
"""What fresh memory costs on this machine: maps 1 GiB, writes one byte per
4 KiB page (so every page faults in), unmaps it, three times, and prints the
time per MiB. `--huge` asks for transparent huge pages (MADV_HUGEPAGE).

On a VM whose balloon reports freed pages to the host, the first pass pays
for the host backing the pages again (BENCHMARKS.md, 2026-11-23 evening).

    python3 benches/sim/touch.py [--huge]
"""
import mmap
import sys
import time

SIZE = 1 << 30
huge = "--huge" in sys.argv[1:]
for _ in range(3):
    m = mmap.mmap(-1, SIZE)
    if huge:
        m.madvise(mmap.MADV_HUGEPAGE)
    started = time.time()
    for i in range(0, SIZE, 4096):
        m[i] = 1
    took = time.time() - started
    print(f"{'huge ' if huge else ''}touch 1 GiB: {took:.3f} s ({took / (SIZE >> 20) * 1e3:.3f} ms per MiB)")
    m.close()
