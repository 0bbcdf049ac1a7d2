"""Prints a `settle load --json` report's p50/p99/max and its p99/max per second (ms)."""
import json
import sys

j = json.load(open(sys.argv[1]))
l = j["latencyMicros"]
print("ops/s %.0f p50 %.1f p99 %.1f max %.1f ms" % (j["opsPerSec"], l["p50"] / 1e3, l["p99"] / 1e3, l["max"] / 1e3))
print(" ".join("%d:%.0f/%.0f" % (t["second"], t["p99Micros"] / 1e3, t["maxMicros"] / 1e3) for t in j["timeline"]))
