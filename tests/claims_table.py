"""The table behind every claim test's bounds: min / mean / max of each claimed quantity under
each of torch's CPU kernel paths (one JSON file of a ``tests/part*/measure.py`` run per path),
and over all of them. ``benchmarks/CLAIMS_MEASUREMENTS.md`` keeps these tables."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable


def per_path(paths, claimed: Callable[[dict], dict[str, list[float]]]) -> dict:
    """{"<kernel path> (<n> seeds)": {quantity: [value per seed]}} for JSON files holding
    {"kernel path": ..., "seeds": [...], ...}; ``claimed`` maps one file's data to its
    quantities."""
    out = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        out[f"{data['kernel path']} ({len(data['seeds'])} seeds)"] = claimed(data)
    return out


def format_table(per_file: dict[str, dict[str, list[float]]]) -> str:
    """One row per quantity: min / mean / max under each kernel path, then over all paths."""
    keys = list(next(iter(per_file.values())))
    width = max(len(k) for k in keys)
    heads = list(per_file) + ["all"]
    lines = [f"{'claimed quantity':{width}}  " + "  ".join(f"{h:^23}" for h in heads),
             f"{'':{width}}  " + "  ".join(f"{'min':>7} {'mean':>7} {'max':>7}" for _ in heads)]
    for key in keys:
        cells, everything = [], []
        for rows in per_file.values():
            values = [float(v) for v in rows[key]]
            everything += values
            cells.append(f"{min(values):7.3f} {statistics.fmean(values):7.3f} "
                         f"{max(values):7.3f}")
        cells.append(f"{min(everything):7.3f} {statistics.fmean(everything):7.3f} "
                     f"{max(everything):7.3f}")
        lines.append(f"{key:{width}}  " + "  ".join(cells))
    return "\n".join(lines)
