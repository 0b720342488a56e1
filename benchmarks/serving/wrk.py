"""Driving a server with wrk (one thread, a Lua script POSTing one body) and reading its report."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK_TIMEOUT = "2s"  # a request slower than this counts as a wrk timeout error
WRK_INSTALL = "install it with `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`"


class WrkFailed(Exception):
    """wrk exited with an error (it could not connect, or its script failed)."""


@dataclass(frozen=True, slots=True)
class Load:
    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int

    @property
    def errors(self) -> int:
        return (
            self.non_2xx
            + self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeouts
        )


TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(output: str) -> Load:
    def number(pattern: str, default: str | None = None) -> str:
        found = re.search(pattern, output, re.MULTILINE)
        if found is None:
            if default is None:
                raise ValueError(f"wrk output lacks {pattern!r}:\n{output}")
            return default
        return found.group(1)

    def percentile(p: int) -> float:
        found = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE)
        if found is None:
            raise ValueError(f"wrk output lacks the {p}% latency:\n{output}")
        return float(found.group(1)) * TIME_UNITS_MS[found.group(2)]

    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    connect, read, write, timeout = map(int, sockets.groups()) if sockets else (0, 0, 0, 0)
    duration = re.search(r"requests in ([\d.]+)(us|ms|s|m|h)", output)
    if duration is None:
        raise ValueError(f"wrk output lacks the request count:\n{output}")
    return Load(
        requests=int(number(r"^\s+(\d+) requests in")),
        duration_s=float(duration.group(1)) * TIME_UNITS_MS[duration.group(2)] / 1e3,
        requests_per_s=float(number(r"^Requests/sec:\s+([\d.]+)")),
        p50_ms=percentile(50),
        p75_ms=percentile(75),
        p90_ms=percentile(90),
        p99_ms=percentile(99),
        non_2xx=int(number(r"Non-2xx or 3xx responses: (\d+)", "0")),
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeout,
    )


def wrk_script(folder: Path, body: bytes) -> Path:
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the body cannot go into a Lua long string")
    script = folder / f"post-{abs(hash(body))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{text}]==]\n"
    )
    return script


def run_wrk(url: str, script: Path, *, connections: int, duration_s: float) -> Load:
    command = [
        *("wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency"),
        *("--timeout", WRK_TIMEOUT, "-s", str(script), url),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=duration_s + 60
    )
    if done.returncode != 0:
        raise WrkFailed(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse_wrk(done.stdout)


def wrk_version() -> str:
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].strip()
