"""Step times as ratios: every optimizer against full-precision Adam, BLAQ against LAQ.

``python benchmarks/ratios.py results.json`` reads a ``pytest --benchmark-json`` file; the
benchmark conftest prints the same table at the end of a run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

LAQ_TARGET = 1.15  # a LAQ step over the full-precision Adam step
BLAQ_TARGET = 2.1  # a BLAQ step (active epoch) over the LAQ step with the same quantizer


def ratio_lines(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Rows need model, optimizer, kind, scheme, min, median (seconds); one line per row."""
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    lines = []
    for model, group in by_model.items():
        fp = next((r for r in group if r["kind"] == "fp"), None)
        laq = {r["scheme"]: r for r in group if r["kind"] == "laq"}
        lines.append(f"{model}: median (min) step time, ratio to fp Adam; BLAQ also to LAQ")
        for r in group:
            text = f"  {r['optimizer']:16s} {r['median'] * 1e3:9.1f} ms ({r['min'] * 1e3:.1f})"
            if fp is not None:
                ratio, best = r["median"] / fp["median"], r["min"] / fp["min"]
                text += f"  x{ratio:.3f} ({best:.3f}) vs fp"
                if r["kind"] == "laq":
                    text += _verdict(ratio, LAQ_TARGET)
            base = laq.get(r["scheme"])
            if r["kind"] == "blaq" and base is not None:
                ratio, best = r["median"] / base["median"], r["min"] / base["min"]
                text += f"  x{ratio:.3f} ({best:.3f}) vs laq{_verdict(ratio, BLAQ_TARGET)}"
            lines.append(text)
    return lines


def _verdict(ratio: float, target: float) -> str:
    return f" [<= {target}: {'ok' if ratio <= target else 'MISSED'}]"


def rows_from_json(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``ratio_lines`` from a pytest-benchmark JSON document."""
    return [
        {**b["extra_info"], "min": b["stats"]["min"], "median": b["stats"]["median"]}
        for b in data["benchmarks"]
        if "optimizer" in b.get("extra_info", {})
    ]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python benchmarks/ratios.py RESULTS.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        print("\n".join(ratio_lines(rows_from_json(json.load(f)))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
