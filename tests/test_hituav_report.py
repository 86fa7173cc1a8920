"""The HIT-UAV report's 99% target is read against the dense rows matched to ours_50's epochs."""

import importlib
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _row(epochs: int, gflops: float, score: float) -> dict:
    return {"epochs": epochs, "gflops": gflops, "mAP50-95": score}


def test_dense_bar_ignores_dense_rows_trained_for_other_epochs(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    report = importlib.import_module("hituav_report")
    rows = {
        "dense_s": _row(20, 4.0, 0.23),
        "dense_s_matched": _row(48, 4.0, 0.30),
        "dense_s_40": _row(60, 4.0, 0.40),  # trained longer than ours_50: not its bar
        "ours_50": _row(28, 2.0, 0.2975),
    }
    first = report.targets(rows)[0]
    assert "best dense (0.3000 -> needs 0.2970)" in first
    assert first.endswith(report.verdict(True))
    rows["ours_50"] = _row(40, 2.0, 0.2975)  # a 40-epoch ours_50 is read against the 40-epoch dense row
    assert "best dense (0.4000" in report.targets(rows)[0]
