"""One 8 KiB pwrite + fdatasync, 4,000 times, on a sparse file (set_len) and
on a file of written zeros: CPU (user+sys) and wall time per sync.

    python3 benches/http/fsync_sparse_vs_zeros.py [DIR]
"""
import os
import resource
import sys
import time

DIR = sys.argv[1] if len(sys.argv) > 1 else "."


def run(mode, n=4000, size=64 << 20):
    path = os.path.join(DIR, "fsync-bench." + mode)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    if mode == "zeros":
        zeros = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            os.write(fd, zeros)
    else:
        os.ftruncate(fd, size)
    os.fsync(fd)
    buf = os.urandom(8192)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for i in range(n):
        os.pwrite(fd, buf, i * 8192)
        os.fdatasync(fd)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    os.close(fd)
    os.remove(path)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print("%-6s wall/op %.0f us  cpu/op %.1f us (sys %.1f)" % (
        mode, (t1 - t0) / n * 1e6, cpu / n * 1e6, (r1.ru_stime - r0.ru_stime) / n * 1e6))


for m in ("sparse", "zeros", "sparse", "zeros"):
    run(m)
