"""The report's PNG plots, drawn with matplotlib's non-interactive Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .rundata import Run

# the configurations whose latency distributions are drawn, when present
LATENCY_NAMES = ("bare", "stack:memory", "stack:redis", "peer:stack", "peer:base-http-noop")
GROUP_COLOURS = {"baseline": "#4d4d4d", "stack": "#1b7837", "peers": "#b2182b"}
OTHER_COLOUR = "#2166ac"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ratios(run: Run, path: Path) -> Path | None:
    """Horizontal bars of req/s as a ratio to bare, with the min-max spread over rounds."""
    from .rundata import main_rows

    rows = main_rows(run)
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(rows) + 1.2))
    names = [r["name"] for r in rows][::-1]
    values = [r["ratio"] for r in rows][::-1]
    low = [r["ratio"] - r["ratio_min"] for r in rows][::-1]
    high = [r["ratio_max"] - r["ratio"] for r in rows][::-1]
    colours = [GROUP_COLOURS.get(r["group"], OTHER_COLOUR) for r in rows][::-1]
    ax.barh(names, values, xerr=[low, high], color=colours, capsize=3, ecolor="#999999")
    ax.axvline(1.0, color="#333333", linewidth=0.8, linestyle="--")
    for y, value in enumerate(values):
        ax.text(value + 0.02, y, f"{value:.2f}x", va="center", fontsize=8)
    ax.set_xlabel("requests/s as a ratio to bare Starlette (bars: lowest to highest round)")
    ax.set_xlim(0, max(1.15, max(r["ratio_max"] for r in rows) * 1.15))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency(run: Run, path: Path) -> Path | None:
    """Latency against percentile for the headline configurations (log scale)."""
    rows = run.rows()
    chosen = [rows[n] for n in LATENCY_NAMES if n in rows and rows[n].get("percentiles_ms")]
    if not chosen:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for row in chosen:
        points = sorted((float(p), ms) for p, ms in row["percentiles_ms"].items())
        # x as "nines": 50 -> 0.3, 90 -> 1, 99 -> 2, 99.9 -> 3, so the tail gets its room
        xs = [-_log10(1 - p / 100) for p, _ in points]
        ax.plot(xs, [ms for _, ms in points], marker="o", markersize=3, label=row["name"])
    ticks = [50.0, 75.0, 90.0, 95.0, 99.0, 99.9]
    ax.set_xticks([-_log10(1 - p / 100) for p in ticks], [f"p{p:g}" for p in ticks])
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (log)")
    ax.set_xlabel("percentile")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _log10(value: float) -> float:
    import math

    return math.log10(value)


def series(run: Run, group: str, xlabel: str, path: Path) -> Path | None:
    """Server time per request (1000 / req/s: the server is saturated on its core) against the
    series' point (body size or chunk count), one line a variant."""
    from .rundata import paired, point_value

    by_variant = paired(run, group)
    if not by_variant:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for variant, points in sorted(by_variant.items()):
        ordered = sorted(
            ((p, r) for p, r in points.items() if r["rps"] > 0),
            key=lambda item: point_value(item[0]),
        )
        ax.plot(
            [point_value(p) for p, _ in ordered],
            [1000 / r["rps"] for _, r in ordered],
            marker="o",
            label=variant,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("server time per request, ms (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scaling(run: Run, path: Path) -> Path | None:
    """Requests/s against uvicorn workers, with the min-max spread."""
    if run.scaling is None or not run.scaling["rows"]:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(dict.fromkeys(r["name"] for r in run.scaling["rows"]))
    for name in names:
        rows = sorted((r for r in run.scaling["rows"] if r["name"] == name), key=_workers)
        ax.errorbar(
            [r["workers"] for r in rows],
            [r["rps"] for r in rows],
            yerr=[[r["rps"] - r["rps_min"] for r in rows], [r["rps_max"] - r["rps"] for r in rows]],
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_xlabel("uvicorn workers")
    ax.set_ylabel("requests/s")
    ax.set_xticks(sorted({r["workers"] for r in run.scaling["rows"]}))
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _workers(row: dict[str, Any]) -> int:
    return int(row["workers"])


def draw_all(run: Run, directory: Path) -> dict[str, Path]:
    """Every plot that the run has data for, as ``{key: path}``."""
    directory.mkdir(parents=True, exist_ok=True)
    drawn = {
        "ratios": ratios(run, directory / "ratios.png"),
        "latency": latency(run, directory / "latency.png"),
        "payload": series(run, "payload", "request body, bytes (log)", directory / "payload.png"),
        "stream": series(run, "stream", "chunks in the stream (log)", directory / "stream.png"),
        "scaling": scaling(run, directory / "scaling.png"),
    }
    return {key: path for key, path in drawn.items() if path is not None}
