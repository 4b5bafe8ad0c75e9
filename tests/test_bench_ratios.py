"""The benchmark's ratio table (``benchmarks/ratios.py``): every target row gets its verdict."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import ratios  # noqa: E402


def _row(name: str, kind: str, scheme: str | None, seconds: float, **options) -> dict:
    return {"model": "mlp", "optimizer": name, "kind": kind, "scheme": scheme,
            "options": options, "min": seconds, "median": seconds}


def test_every_target_row_has_its_verdict_against_the_right_base():
    rows = [_row("fp-adam", "fp", None, 1.0), _row("fp-adam-fused", "fp-fused", None, 0.8),
            _row("laq-lab", "laq", "lab", 1.04), _row("laq-twn", "laq", "twn", 1.06),
            _row("laq-laq-log", "laq", "laq-log", 1.5),
            _row("laq-laq-log-r1", "laq", "laq-log", 1.1, rounds=1),
            _row("laq-lab-zigzag", "laq-zigzag", "lab", 1.04 * 1.2),
            _row("blaq-lab", "blaq", "lab", 1.04 * 2.0),
            _row("laq-lab-c", "laq", "lab", 0.9, compile=True)]
    lines = ratios.ratio_lines(rows)
    text = "\n".join(lines)

    def line(name: str) -> str:
        return next(x for x in lines if x.startswith(f"  {name} "))

    assert "x1.040 (1.040) vs fp [<= 1.05: ok]" in line("laq-lab")
    assert "x1.060 (1.060) vs fp [<= 1.05: MISSED]" in line("laq-twn")  # closed form: 1.05
    assert "vs fp [<= 1.15: MISSED]" in line("laq-laq-log")
    assert "vs fp [<= 1.15: ok]" in line("laq-laq-log-r1")
    assert "x1.200 (1.200) vs laq-lab [<= 1.1: MISSED]" in line("laq-lab-zigzag")
    assert "x2.000 (2.000) vs laq-lab [<= 2.05: ok]" in line("blaq-lab")
    assert "x1.300 vs fused" in line("laq-lab")  # 1.04 / 0.8, no target
    targets = lines[lines.index("targets: eager and compile=True"):]
    assert "  laq-lab            x1.040 [<= 1.05: ok]  compile=True x0.900 [<= 1.05: ok]" in targets
    # lab, log-r1 and BLAQ met of the 6 eager rows; the one compiled row met
    assert "  met: eager 3 of 6, compile=True 1 of 1; missed with compile=True: none" in targets
    assert ratios.SPEC_RULE_NOTE in text  # the spec's rule missed: the note says what meets it


def test_the_note_is_left_out_when_the_spec_rule_meets_its_target():
    rows = [_row("fp-adam", "fp", None, 1.0), _row("laq-laq-log", "laq", "laq-log", 1.1)]
    assert ratios.SPEC_RULE_NOTE not in "\n".join(ratios.ratio_lines(rows))


def test_bad_input_is_a_one_line_reason_and_status_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"no": "benchmarks"}')
    odd = tmp_path / "odd.json"
    odd.write_text('{"benchmarks": [1]}')
    partial = tmp_path / "partial.json"
    partial.write_text('{"benchmarks": [{"extra_info": {"optimizer": "x"}, '
                       '"stats": {"min": 1, "median": 1}}]}')
    cases = [([], "usage:"), (["a.json", "b.json"], "usage:"), (["--bogus"], "usage:"),
             ([str(tmp_path / "missing.json")], "cannot read"),
             ([str(bad)], "is not a pytest-benchmark JSON file"),
             ([str(odd)], "is not a pytest-benchmark JSON file"),
             ([str(partial)], "is not a pytest-benchmark JSON file"),
             (["--measure", "mnist-mlp", "x"], "ROUNDS must be an integer"),
             (["--measure", "mnist-mlp", "0"], "ROUNDS must be at least 1"),
             (["--measure", "no-such-model", "1"], "unknown model 'no-such-model'"),
             (["--measure", "mnist-mlp", "1", "laq-nothing"], "unknown step 'laq-nothing'")]
    for argv, reason in cases:
        assert ratios.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert reason in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert ratios.main(["--help"]) == 0
    assert "usage:" in capsys.readouterr().out
