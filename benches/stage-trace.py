#!/usr/bin/env python3
"""Timestamps TCP segments on the loopback interface on CLOCK_MONOTONIC, for breakdown.mjs.

  stage-trace.py OUTFILE PORT...

Like lo-trace.py (each data-carrying segment once, as it leaves its sender, with the kernel's
receive timestamp), but each line is "MONO_MS SPORT DPORT PAYLOAD_BYTES FIRST_PAYLOAD_BYTE": the
kernel stamps on the wall clock, which is slewed here by milliseconds per second, so each stamp is
moved to the monotonic clock with the offset between the two clocks read right after the segment
was received (microseconds later). The first payload byte tells RFB messages apart (0: a
FramebufferUpdate from the server, 3: an update request from the client). Needs CAP_NET_RAW.
"""
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4

out_path = sys.argv[1]
ports = {int(p) for p in sys.argv[2:]}

s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
s.bind(("lo", 0))
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
s.settimeout(0.2)

running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)

lines = []
sys.stdout.write("ready\n")
sys.stdout.flush()
while running:
    try:
        data, anc, _flags, addr = s.recvmsg(160, 64)
    except socket.timeout:
        continue
    except InterruptedError:
        continue
    off = time.clock_gettime(time.CLOCK_REALTIME) * 1000.0 - time.clock_gettime(time.CLOCK_MONOTONIC) * 1000.0
    if addr[2] != PACKET_OUTGOING or len(data) < 14 + 20 + 20:
        continue
    if struct.unpack("!H", data[12:14])[0] != 0x0800:
        continue
    ip = data[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != 6:
        continue
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:]
    sport, dport = struct.unpack("!HH", tcp[0:4])
    if sport not in ports and dport not in ports:
        continue
    doff = (tcp[12] >> 4) * 4
    payload = total - ihl - doff
    if payload <= 0:
        continue
    first = tcp[doff] if len(tcp) > doff else -1
    ts = None
    for level, kind, value in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", value[:16])
            ts = sec * 1000.0 + nsec / 1e6
    if ts is None:
        continue
    lines.append("%.3f %d %d %d %d\n" % (ts - off, sport, dport, payload, first))

with open(out_path, "w") as f:
    f.writelines(lines)
