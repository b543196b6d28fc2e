#!/usr/bin/env python3
"""Timestamps TCP segments on the loopback interface, for the latency breakdown of the benchmark.

  lo-trace.py OUTFILE PORT...

Records every TCP segment carrying data whose source or destination port is one of PORTS, once
(as it leaves its sender), with the kernel's receive timestamp. Each line of OUTFILE is
"WALL_MS SPORT DPORT PAYLOAD_BYTES". Runs until SIGTERM or SIGINT. Needs CAP_NET_RAW (root).
Payloads are not looked at (and the gateway's are TLS anyway).
"""
import signal
import socket
import struct
import sys

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
        data, anc, _flags, addr = s.recvmsg(128, 64)  # headers are enough
    except socket.timeout:
        continue
    except InterruptedError:
        continue
    # Loopback shows each packet twice (sent and received): keep the sent copy.
    if addr[2] != PACKET_OUTGOING or len(data) < 14 + 20 + 20:
        continue
    if struct.unpack("!H", data[12:14])[0] != 0x0800:  # IPv4 only (the benchmark uses 127.0.0.1)
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
    ts = None
    for level, kind, value in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", value[:16])
            ts = sec * 1000.0 + nsec / 1e6
    if ts is None:
        continue
    lines.append("%.3f %d %d %d\n" % (ts, sport, dport, payload))

with open(out_path, "w") as f:
    f.writelines(lines)
