"""The latency proxy in a process of its own, for the bench.

In the measured process, the proxy's threads would take the GIL from the code under test each time a chunk
passes (a 1 MB statement is 16 of them, each way), and a thread waiting out the delay wakes the interpreter
too: on 2 cores the worker lost 14% through the proxy at 0 ms against a direct connection, where the limit
(psycopg's COPY, which holds the GIL little) lost 1%. A real network costs the client no CPU and no GIL, so
the bench runs the proxy beside the client, as a separate process that forwards, delays and counts.

The parent speaks to it over its stdin and stdout, a line each way: the child prints its port once listening,
then answers ``count`` (the round trips since the last ``reset``) and ``reset``; it stops when stdin closes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent


def _serve(target_port: int, delay: float) -> None:
    """The child: forward, delay and count until told to stop (or until the parent goes: stdin closes)."""
    sys.path.insert(0, str(ROOT))
    from tests.tools.tcp_proxy import LatencyProxy

    with LatencyProxy("127.0.0.1", target_port, delay_seconds=delay) as proxy:
        print(proxy.port, flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "count":
                print(proxy.round_trips, flush=True)
            elif command == "reset":
                proxy.reset_round_trips()
                print(0, flush=True)
            else:
                return


class ProxyProcess:
    """A ``LatencyProxy`` (``delay`` seconds per round trip, in front of ``target_port``) in a child process,
    with the part of its interface the bench uses: ``port``, ``round_trips``, ``reset_round_trips()``."""

    def __init__(self, target_port: int, delay: float) -> None:
        self._process = subprocess.Popen([sys.executable, __file__, str(target_port), repr(delay)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = self._answer()

    def _answer(self) -> int:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise SystemExit(f"the latency proxy process ended (exit {self._process.wait()})")
        return int(line)

    def _ask(self, command: str) -> int:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._answer()

    @property
    def round_trips(self) -> int:
        return self._ask("count")

    def reset_round_trips(self) -> None:
        self._ask("reset")

    def close(self) -> None:
        try:
            assert self._process.stdin is not None
            self._process.stdin.close()  # the child's loop ends, and the proxy with it
            self._process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            if self._process.stdout is not None:
                self._process.stdout.close()

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), float(sys.argv[2]))
