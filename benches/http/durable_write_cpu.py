"""What one durable log write costs here: a 700-byte record appended to a
64 MiB file of written zeros, 3,000 times, either buffered (`pwrite` +
`fdatasync`, what the log does) or with O_DIRECT | O_DSYNC (the 4 KiB
blocks around the record rewritten, no separate sync). Prints latency and
the process's CPU (user + sys) per write.

    python3 benches/http/durable_write_cpu.py [DIR] [buffered|direct ...]
"""
import mmap
import os
import sys
import time

DIR = sys.argv[1] if len(sys.argv) > 1 else "."
MODES = sys.argv[2:] or ["buffered", "direct", "buffered", "direct"]
N, RECORD, SIZE = 3000, 700, 64 << 20
PATH = os.path.join(DIR, "durable-write-bench.bin")


def prepare():
    fd = os.open(PATH, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    zeros = b"\0" * (1 << 20)
    for i in range(SIZE >> 20):
        os.pwrite(fd, zeros, i << 20)
    os.fsync(fd)
    os.close(fd)


def cpu():
    t = os.times()
    return t.user + t.system


def run(mode):
    prepare()
    buf = mmap.mmap(-1, 8192)  # page-aligned, as O_DIRECT needs
    buf.write(b"x" * RECORD)
    flags = os.O_WRONLY | (os.O_DIRECT | os.O_DSYNC if mode == "direct" else 0)
    fd = os.open(PATH, flags)
    lat, off = [], 0
    c0, w0 = cpu(), time.perf_counter()
    for _ in range(N):
        t0 = time.perf_counter()
        if mode == "direct":
            base, end = off & ~4095, (off + RECORD + 4095) & ~4095
            os.pwritev(fd, [memoryview(buf)[: end - base]], base)
        else:
            os.pwrite(fd, bytes(buf[:RECORD]), off)
            os.fdatasync(fd)
        off += RECORD
        lat.append(time.perf_counter() - t0)
    c1, w1 = cpu(), time.perf_counter()
    os.close(fd)
    lat.sort()
    print("%-8s median %.3f ms, p99 %.3f ms, CPU %.1f us per write, wall %.3f ms per write"
          % (mode, lat[N // 2] * 1e3, lat[int(N * 0.99)] * 1e3, (c1 - c0) / N * 1e6, (w1 - w0) / N * 1e3))


for m in MODES:
    run(m)
os.unlink(PATH)
