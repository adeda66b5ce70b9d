#!/usr/bin/env python3
"""Send raw Ethernet frames on an interface and capture what comes back.

Run inside a namespace: nsenter --net=/run/netns/NS -- python3 frames.py IFACE < spec.json
spec: {"send": [hex, ...], "repeat": 1, "listen_ms": 300, "expect": N, "match": hex, "pps": 0}
  - frames are sent in order, the whole list `repeat` times, paced at `pps` if > 0
  - capture stops `listen_ms` after the last send, or as soon as `expect` frames arrived
  - only received frames containing the `match` bytes are kept (e.g. a test's payload tag)
Prints {"sent": n, "received": [hex, ...]} on stdout.
"""
import json
import select
import socket
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: frames.py IFACE < spec.json", file=sys.stderr)
        return 2
    iface = sys.argv[1]
    spec = json.load(sys.stdin)
    frames = [bytes.fromhex(h) for h in spec.get("send", [])]
    repeat = int(spec.get("repeat", 1))
    listen = float(spec.get("listen_ms", 300)) / 1000.0
    expect = spec.get("expect")
    match = bytes.fromhex(spec["match"]) if spec.get("match") else None
    pps = float(spec.get("pps", 0))

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((iface, 0))
    s.setblocking(False)

    received = []

    def drain() -> None:
        while True:
            try:
                data = s.recv(65535)
            except BlockingIOError:
                return
            if match is None or match in data:
                received.append(data.hex())

    sent = 0
    gap = 1.0 / pps if pps > 0 else 0.0
    next_t = time.monotonic()
    for _ in range(repeat):
        for f in frames:
            if gap:
                # wait in select (draining replies) until ~1.5 ms before the frame is due, then
                # spin the rest: a spin for the whole gap of a slow pace would take a host core
                # for the run (two paced senders starved an emulated device of both)
                while next_t - time.monotonic() > 0.002:
                    r, _, _ = select.select([s], [], [], next_t - time.monotonic() - 0.0015)
                    if r:
                        drain()
                while time.monotonic() < next_t:
                    pass
                next_t += gap
            while True:
                try:
                    s.send(f)
                    break
                except BlockingIOError:
                    select.select([], [s], [], 0.01)
            sent += 1
            if sent % 64 == 0:
                drain()

    deadline = time.monotonic() + listen
    while time.monotonic() < deadline:
        if expect is not None and len(received) >= int(expect):
            break
        r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
        if r:
            drain()
    drain()
    json.dump({"sent": sent, "received": received}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
