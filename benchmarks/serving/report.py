"""The benchmark's rows and how they are shown: the full table, the single-row summary and issue 3's
targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from servers import SHIPYARD_VARIANT_ARGS, FloorServer
from wrk import Load


@dataclass(frozen=True, slots=True)
class Row:
    server: str
    model: str
    workers: int | None
    payload_rows: int | None
    connections: int | None
    load: Load | None
    note: str = ""


def summarize(load: Load) -> str:
    return (
        f"{load.requests_per_s:,.0f} req/s, p50 {format_ms(load.p50_ms)}, "
        f"p99 {format_ms(load.p99_ms)}, errors {load.errors}"
    )


def format_ms(ms: float) -> str:
    if ms < 1:
        return f"{ms:.3f} ms"
    if ms < 10:
        return f"{ms:.2f} ms"
    if ms < 100:
        return f"{ms:.1f} ms"
    return f"{ms:,.0f} ms"


def format_share(share: float) -> str:
    return f"{share:.1%}" if share < 0.1 else f"{share:.0%}"


def format_errors(load: Load) -> str:
    if load.errors == 0:
        return "0"
    kinds = {
        "non-2xx": load.non_2xx,
        "connect": load.connect_errors,
        "read": load.read_errors,
        "write": load.write_errors,
        "timeout": load.timeouts,
    }
    detail = ", ".join(f"{kind} {count:,}" for kind, count in kinds.items() if count)
    return f"{load.errors:,} ({detail})"


def short_note(note: str, limit: int = 160) -> str:
    """The last line of a reason (a log tail's lines are joined by " | "), for the table."""
    last = note.rsplit(" | ", 1)[-1]
    prefix = note.split(":", 1)[0] + ": " if " | " in note else ""
    text = prefix + last
    return (text if len(text) <= limit else text[: limit - 1] + "…").replace("|", "\\|")


def floor_share(rows: Sequence[Row]) -> dict[int, float]:
    """Each measured row's req/s as a fraction of the floor's in the same cell (same model,
    workers, payload and connections), keyed by the row's index."""
    floor = {
        (r.model, r.workers, r.payload_rows, r.connections): r.load.requests_per_s
        for r in rows
        if r.server == FloorServer.name and r.load is not None
    }
    shares = {}
    for i, r in enumerate(rows):
        reference = floor.get((r.model, r.workers, r.payload_rows, r.connections))
        if r.load is not None and reference and r.server != FloorServer.name:
            shares[i] = r.load.requests_per_s / reference
    return shares


def markdown_table(rows: Sequence[Row]) -> str:
    """Every row; the note column only when a row has a note (why it was not measured)."""
    noted = any(r.note for r in rows)
    header = (
        "| server | model | workers | payload rows | connections | req/s | of floor | p50 | p99 "
    )
    header += "| errors | note |" if noted else "| errors |"
    lines = [header, "| --- | --- |" + " ---: |" * 8 + (" --- |" if noted else "")]
    shares = floor_share(rows)
    for i, r in enumerate(rows):
        cells = [
            r.server,
            r.model,
            *(str(v) if v is not None else "—" for v in (r.workers, r.payload_rows, r.connections)),
        ]
        if r.load is None:
            cells += ["—"] * 5
        else:
            share = shares.get(i)
            cells += [
                f"{r.load.requests_per_s:,.0f}",
                "—" if share is None else format_share(share),
                format_ms(r.load.p50_ms),
                format_ms(r.load.p99_ms),
                format_errors(r.load),
            ]
        if noted:
            cells.append(short_note(r.note))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(rows: Sequence[Row]) -> str:
    """Single-row requests per server and model: latency at c=1 and throughput at c=64, per
    worker count, with the share of the floor's throughput in the same cell."""
    workers = sorted({r.workers for r in rows if r.workers is not None})
    header = ["server", "model"]
    for w in workers:
        header += [f"c=1 p50 ({w}w)", f"c=1 p99 ({w}w)", f"c=64 req/s ({w}w)"]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- |" + " ---: |" * (len(header) - 2)]
    for server, model in dict.fromkeys((r.server, r.model) for r in rows):
        cells = [server, model]
        for w in workers:
            idle = find(rows, server, model, w, 1)
            busy = find(rows, server, model, w, 64)
            floor = find(rows, FloorServer.name, model, w, 64)
            cells += [
                "—" if idle is None else format_ms(idle.p50_ms),
                "—" if idle is None else format_ms(idle.p99_ms),
                "—" if busy is None else f"{busy.requests_per_s:,.0f}",
            ]
            if busy is not None and floor is not None and server != FloorServer.name:
                cells[-1] += f" ({format_share(busy.requests_per_s / floor.requests_per_s)})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def find(
    rows: Sequence[Row], server: str, model: str, workers: int, connections: int
) -> Load | None:
    """The single-row load of one cell, if it was measured."""
    cell = (server, model, workers, 1, connections)
    for r in rows:
        if (r.server, r.model, r.workers, r.payload_rows, r.connections) == cell:
            return r.load
    return None


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def target_lines(rows: Sequence[Row]) -> list[str]:
    """Issue 3's targets, per worker count: LightGBM after `shipyard models optimize`, single
    row, OIP v2 REST — c=64 ≥ 10,000 req/s and ≥ 50% of the floor, c=1 p50 ≤ 0.3 ms and p99 ≤ 1 ms,
    no errors; native HGB: batching ≥ 3× the same server without it at c=64."""
    onnx = "shipyard (ONNX)"
    batching = " ".join(["shipyard", *SHIPYARD_VARIANT_ARGS["shipyard-batching"]])
    lines = []
    for workers in sorted({r.workers for r in rows if r.workers is not None}):
        parts = []
        busy = find(rows, onnx, "lightgbm", workers, 64)
        floor = find(rows, FloorServer.name, "lightgbm", workers, 64)
        if busy is not None and floor is not None:
            share = busy.requests_per_s / floor.requests_per_s
            parts.append(
                f"LightGBM ONNX c=64 {busy.requests_per_s:,.0f} req/s "
                f"(≥ 10,000: {verdict(busy.requests_per_s >= 10_000)}), {share:.0%} of the floor "
                f"(≥ 50%: {verdict(share >= 0.5)})"
            )
        idle = find(rows, onnx, "lightgbm", workers, 1)
        if idle is not None:
            parts.append(
                f"c=1 p50 {format_ms(idle.p50_ms)} (≤ 0.3 ms: {verdict(idle.p50_ms <= 0.3)}), "
                f"p99 {format_ms(idle.p99_ms)} (≤ 1 ms: {verdict(idle.p99_ms <= 1)})"
            )
        measured = [
            r.load for r in rows if (r.server, r.model, r.workers) == (onnx, "lightgbm", workers)
        ]
        if any(load is None for load in measured):
            parts.append("**failed or not run** (see the table)")
        elif measured:
            errors = sum(load.errors for load in measured if load is not None)
            parts.append(f"errors {errors:,} (none: {verdict(errors == 0)})")
        native = find(rows, "shipyard", "sklearn-hgb", workers, 64)
        batched = find(rows, batching, "sklearn-hgb", workers, 64)
        if native is not None and batched is not None and native.requests_per_s > 0:
            gain = batched.requests_per_s / native.requests_per_s
            parts.append(f"HGB batching gain at c=64 {gain:.1f}× (≥ 3×: {verdict(gain >= 3)})")
        lines.append(f"- {workers} worker(s): " + ("; ".join(parts) or "not measured"))
    return lines
