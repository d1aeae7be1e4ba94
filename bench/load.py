#!/usr/bin/env python3
"""A client hammering one HTTP server with a new connection per request
(bench/update.sh): THREADS threads until the file STOP exists, then prints
a JSON summary: requests, failures (and the first kinds), the bodies seen
(each change of body between consecutive answers, all threads together),
the longest time between two successful answers, and the time from the
first failed request to the last (the downtime).

Usage: load.py HOST PORT STOP [THREADS]
"""
import json
import socket
import sys
import threading
import time

host, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 4
lock = threading.Lock()
ok_times, failures, bodies = [], [], []


def one():
    with socket.create_connection((host, port), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
        raise OSError(head.split(b"\r\n")[0].decode(errors="replace") or "empty answer")
    return body.decode(errors="replace").strip()


def worker():
    import os

    while not os.path.exists(stop):
        t = time.monotonic()
        try:
            body = one()
        except OSError as e:
            with lock:
                failures.append((t, str(e)))
            continue
        with lock:
            ok_times.append(time.monotonic())
            if not bodies or bodies[-1] != body:
                bodies.append(body)


workers = [threading.Thread(target=worker) for _ in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
ok_times.sort()
gaps = [b - a for a, b in zip(ok_times, ok_times[1:])]
print(
    json.dumps(
        {
            "requests": len(ok_times) + len(failures),
            "failures": len(failures),
            "first_failures": sorted({e for _, e in failures})[:3],
            "bodies": bodies,
            "longest_gap_ms": round(max(gaps, default=0) * 1000, 1),
            # From the first failed request's start to the last one's: the
            # time the service did not answer.
            "failing_ms": round((max(t for t, _ in failures) - min(t for t, _ in failures)) * 1000, 1) if failures else 0,
        }
    )
)
