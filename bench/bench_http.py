"""HTTP figures: our request parser beside h11 (same request, same run), and round
trips through the real server classes (helper style: handlers in the selector thread;
API style: worker pool) from a separate client process.

    python bench/bench_http.py            # h11 is optional: pip install h11 to compare
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

from container_runtime.client import UnixClient
from container_runtime.httpwire import encode_request, encode_response, head_end, parse_request_head

REQUEST = encode_request(
    "POST", "/networks/default/attachments", b'{"owner": "c1", "hostname": "c1.test."}'
)
REPLY = b'{"network": "default", "address": "192.168.64.2/24", "gateway": "192.168.64.1"}'

SERVER = """
import sys
from pathlib import Path
from container_runtime.http import Router, SelectorHTTPServer
router = Router()
router.add("GET", "/ping", lambda _: (200, {"ok": True}))
server = SelectorHTTPServer(Path(sys.argv[1]), router, workers=int(sys.argv[2]))
print("ready", flush=True)
server.serve_forever()
"""


def ours() -> None:
    end = head_end(REQUEST)
    head = parse_request_head(REQUEST[:end])
    assert REQUEST[end : end + head.length]
    encode_response(201, REPLY)


def h11_per_request() -> None:
    import h11

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(REQUEST)
    conn.next_event()
    conn.next_event()
    conn.next_event()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(REPLY)))]
    conn.send(h11.Response(status_code=201, headers=headers))
    conn.send(h11.Data(data=REPLY))
    conn.send(h11.EndOfMessage())


def per_call_us(func: object, number: int = 20000) -> float:
    return min(timeit.repeat(func, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


def round_trip_us(workers: int, calls: int = 3000) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.sock"
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(path), str(workers)], stdout=subprocess.PIPE
        )
        try:
            assert server.stdout is not None and server.stdout.readline() == b"ready\n"
            client = UnixClient(path)
            client.request("GET", "/ping")
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(calls):
                    client.request("GET", "/ping")
                runs.append((time.perf_counter() - started) / calls * 1e6)
            return sorted(runs)[len(runs) // 2]
        finally:
            server.kill()
            server.wait()


def main() -> None:
    print(f"parse a request + encode a reply, ours:        {per_call_us(ours):6.1f} us")
    try:
        import h11  # noqa: F401
    except ImportError:
        print("h11 not installed: pip install h11 to compare")
    else:
        print(
            f"same with h11 (a Connection per request):     {per_call_us(h11_per_request):6.1f} us"
        )
    print(f"round trip GET /ping, handlers in the selector: {round_trip_us(0):6.0f} us")
    print(f"round trip GET /ping, worker pool (API server): {round_trip_us(64):6.0f} us")


if __name__ == "__main__":
    main()
