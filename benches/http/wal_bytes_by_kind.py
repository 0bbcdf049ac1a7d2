#!/usr/bin/env python3
"""Bytes of a settle write-ahead log by record kind (and, inside `events`
records, by event kind): where the log's bytes go.

    python3 benches/http/wal_bytes_by_kind.py DATA_DIR/wal

Reads every `*.wal` segment: a 32-byte header, then frames `len u32 LE |
crc u32 LE | payload` until a zero length (snapshots/src/wal/format.rs);
each payload is a MessagePack envelope `{v, record}` whose record has
named fields (formats 1 to 3) or positional ones (format 4;
gateway/src/journal.rs). Needs the `msgpack` Python module. Checksums are
not verified (`settle wal verify` does that).
"""
import collections
import glob
import os
import struct
import sys

import msgpack

records = collections.defaultdict(lambda: [0, 0])
events = collections.defaultdict(lambda: [0, 0])
for seg in sorted(glob.glob(os.path.join(sys.argv[1], "*.wal"))):
    data = open(seg, "rb").read()
    off = 32
    while off + 8 <= len(data):
        (length,) = struct.unpack_from("<I", data, off)
        if length == 0:
            break
        payload = data[off + 8 : off + 8 + length]
        off += 8 + length
        record = msgpack.unpackb(payload, raw=False, strict_map_key=False)["record"]
        kind = next(iter(record)) if isinstance(record, dict) else str(record)
        records[kind][0] += 1
        records[kind][1] += length + 8
        if kind == "events":
            body = record["events"]
            # Named (formats 1-3): {wallet, events}; positional: [wallet, events].
            for e in body["events"] if isinstance(body, dict) else body[1]:
                ek = next(iter(e))
                events[ek][0] += 1
                events[ek][1] += len(msgpack.packb(e))
total = sum(b for _, b in records.values()) or 1
for kind, (n, b) in sorted(records.items(), key=lambda x: -x[1][1]):
    print(f"{kind:12} {n:9} records {b:12} bytes {b / n:8.1f} B/record {100 * b / total:5.1f}%")
for kind, (n, b) in sorted(events.items(), key=lambda x: -x[1][1]):
    print(f"  event {kind:22} {n:9} {b / n:8.1f} B/event")
