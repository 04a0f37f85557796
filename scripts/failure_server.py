#!/usr/bin/env python3
"""A local HTTP ingest endpoint for scripts/failure-bench.sh (seed 004's failure scenario).

Listens on 127.0.0.1 (an ephemeral port, written to --port-file once it listens), answers
each POST with 503 at random with probability --fail-rate (a seeded generator: the same seed
and the same request order give the same failures), else 200. Like an idempotent receiver, it
stores a batch only when it answers 200 and only the first time it sees its Idempotency-Key;
it parses every stored row (JSON lines) and counts rows by `customer_id`, so duplicates are
seen whatever the key says.

On SIGTERM (or when --stats-file is asked for by `kill -USR1`) it writes its counts as JSON to
--stats-file: requests, failed_requests (503 injected), ok_requests, keys (distinct
Idempotency-Keys stored), repeated_keys (2xx answers to a key already stored: dropped),
rows_received (rows of every 200 answer, repeats included), unique_rows, duplicate_rows
(stored rows whose customer_id was already stored).

Python 3 standard library only.
"""
import argparse
import json
import random
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fail-rate", type=float, required=True, help="fraction of requests answered 503 (0..1)")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--stats-file", required=True)
    args = ap.parse_args()
    if not 0.0 <= args.fail_rate < 1.0:
        sys.exit("failure_server.py: --fail-rate must be in [0, 1)")

    rng = random.Random(args.seed)
    lock = threading.Lock()
    keys = set()
    ids = set()
    stats = dict(requests=0, failed_requests=0, ok_requests=0, keys=0, repeated_keys=0,
                 rows_received=0, unique_rows=0, duplicate_rows=0, bad_requests=0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # quiet
            pass

        def setup(self):
            super().setup()
            # The status line and headers, then the body, are separate writes: without
            # TCP_NODELAY the body waits for the client's delayed ACK (~40 ms a request).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def reply(self, code, text):
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            key = self.headers.get("Idempotency-Key", "")
            with lock:
                stats["requests"] += 1
                fail = rng.random() < args.fail_rate
                if fail:
                    stats["failed_requests"] += 1
            if fail:
                self.reply(503, "injected failure")
                return
            try:
                rows = [json.loads(line)["customer_id"] for line in body.decode().splitlines() if line.strip()]
            except (ValueError, KeyError) as e:
                with lock:
                    stats["bad_requests"] += 1
                self.reply(400, f"unreadable body: {e}")
                return
            with lock:
                stats["ok_requests"] += 1
                stats["rows_received"] += len(rows)
                if key and key in keys:
                    stats["repeated_keys"] += 1
                else:
                    keys.add(key)
                    for i in rows:
                        if i in ids:
                            stats["duplicate_rows"] += 1
                        else:
                            ids.add(i)
            self.reply(200, "ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True

    def dump(*_):
        with lock:
            stats["keys"] = len(keys)
            stats["unique_rows"] = len(ids)
            text = json.dumps(stats)
        with open(args.stats_file + ".tmp", "w") as f:
            f.write(text)
        import os
        os.replace(args.stats_file + ".tmp", args.stats_file)

    def stop(*_):
        dump()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGUSR1, dump)
    signal.signal(signal.SIGTERM, stop)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
