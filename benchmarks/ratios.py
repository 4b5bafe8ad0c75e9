"""Step times as ratios: every optimizer against full-precision Adam, BLAQ against LAQ.

``python benchmarks/ratios.py results.json`` reads a ``pytest --benchmark-json`` file; the
benchmark conftest prints the same table at the end of a run. On a busy machine the benchmarks'
one-test-after-another timing drifts with the load; ``python benchmarks/ratios.py --measure
mnist-mlp [ROUNDS]`` instead times the steps round-robin (one step of each optimizer per round,
one thread, CPU time) and reports each ratio as the median of its per-round ratios.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
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


def measure_interleaved(model: str, rounds: int) -> list[str]:
    """Time every optimizer's step round-robin; ratios are medians of per-round ratios."""
    import torch
    from test_step_speed import OPTIMIZERS, make_step

    from benchmark.quant import available_schemes

    torch.set_num_threads(1)
    names = [n for n, (_, s, _) in OPTIMIZERS.items() if s is None or s in available_schemes()]
    steps = {n: make_step(model, n) for n in names}
    for step in steps.values():
        step()
        step()
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for n, step in steps.items():
            start = time.process_time()
            step()
            times[n].append(time.process_time() - start)
    lines = [f"{model}: {rounds} interleaved rounds, one thread, CPU time; "
             "ratio = median over rounds of (step / step of the same round)"]
    for n in names:
        kind, scheme, _ = OPTIMIZERS[n]
        text = f"  {n:16s} {statistics.median(times[n]) * 1e3:9.1f} ms"
        ratio = statistics.median(a / b for a, b in zip(times[n], times["fp-adam"], strict=True))
        text += f"  x{ratio:.3f} vs fp" + (_verdict(ratio, LAQ_TARGET) if kind == "laq" else "")
        if kind == "blaq" and f"laq-{scheme}" in times:
            base = times[f"laq-{scheme}"]
            ratio = statistics.median(a / b for a, b in zip(times[n], base, strict=True))
            text += f"  x{ratio:.3f} vs laq{_verdict(ratio, BLAQ_TARGET)}"
        lines.append(text)
    return lines


def main(argv: list[str]) -> int:
    if argv[:1] == ["--measure"] and len(argv) in (2, 3):
        print("\n".join(measure_interleaved(argv[1], int(argv[2]) if len(argv) == 3 else 10)))
        return 0
    if len(argv) != 1:
        print("usage: python benchmarks/ratios.py RESULTS.json | --measure MODEL [ROUNDS]",
              file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        print("\n".join(ratio_lines(rows_from_json(json.load(f)))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
