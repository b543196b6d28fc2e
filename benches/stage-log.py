#!/usr/bin/env python3
"""Summarises a stage log: where a change's milliseconds go inside the gateway.

  stage-log.py LOG [MIN_PIXELS]

LOG is what a gateway built with benches/stage-log.patch writes to $PORTCULLIS_STAGES (one line
per mark: wall-clock ms, stage, a number, the thread). The marks from one read of the target's
stream to the browser's send are one change; changes with an applied rectangle of at least
MIN_PIXELS pixels (default 100000: the benchmark's large change) are summarised, p50 and p90 of
each stage in ms. See benches/LATENCY-NOTES.md ("Where x11vnc's large change went").
"""
import statistics
import sys

path = sys.argv[1]
min_pixels = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
changes, current = [], []
for line in open(path):
    f = line.split()
    if len(f) < 3:
        continue
    mark = (float(f[0]), f[1], int(f[2]))
    # A read after a send starts the next change.
    if mark[1] == "rd" and any(m[1] == "sent" for m in current):
        changes.append(current)
        current = []
    current.append(mark)
changes.append(current)


def first(c, tag):
    return next((t for t, g, _ in c if g == tag), None)


def last(c, tag):
    return next((t for t, g, _ in reversed(c) if g == tag), None)


STAGES = {
    "decode": lambda c: last(c, "adapter-end") - c[0][0],
    "apply": lambda c: last(c, "sess-complete") - last(c, "adapter-end"),
    "wake": lambda c: first(c, "take0") - last(c, "sess-complete"),
    "split": lambda c: first(c, "split-dmg") - first(c, "take0"),
    "copy": lambda c: first(c, "read") - first(c, "split-dmg"),
    "encode": lambda c: first(c, "encoded") - first(c, "read"),
    "send": lambda c: first(c, "sent") - first(c, "encoded"),
    "total": lambda c: first(c, "sent") - c[0][0],
}
rows = []
for c in changes:
    if not any(g == "apply" and n >= min_pixels for _, g, n in c):
        continue
    try:
        rows.append({k: f(c) for k, f in STAGES.items()})
    except TypeError:  # a mark missing (the change ended otherwise)
        continue
if not rows:
    sys.exit(f"no change with {min_pixels} pixels or more in {path}")
print(f"{len(rows)} changes of >= {min_pixels} pixels, ms:")
for k in STAGES:
    v = sorted(r[k] for r in rows)
    print(f"  {k:7} p50 {statistics.median(v):6.2f}  p90 {v[int(len(v) * 0.9)]:6.2f}")
