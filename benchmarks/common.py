"""What every benchmark script shares: paths, the machine description and results files.

Scripts run from the repository root as `.venv/bin/python benchmarks/NAME.py`; Python puts
`benchmarks/` on the import path, so `import common` is the one way to reach this module, and
`pruned_yolo` comes from the installed package (public API only).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs"


def machine() -> dict:
    """CPU model, core count and library versions: what a figure was measured on."""
    import onnxruntime
    import torch

    from pruned_yolo.utils.torch_utils import cpu_model

    cpu = cpu_model()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def relative(path: str | Path) -> str:
    """`path` relative to the repository root when it lies inside it (results stay portable)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


class ResultsFile:
    """A results JSON `{"protocol": {...}, "machine": {...}, "models": [rows]}`, saved after every row."""

    def __init__(self, path: Path, protocol: dict):
        self.path = Path(path)
        doc = json.loads(self.path.read_text()) if self.path.is_file() else {}
        old = doc.get("protocol")
        keys = ("name", "data", "imgsz")
        if old and {k: old.get(k) for k in keys} != {k: protocol.get(k) for k in keys}:
            raise SystemExit(f"{self.path} holds another protocol ({old.get('name')}); move it away first")
        # other keys a script keeps there (e.g. hituav's latency runs) survive
        self.doc = {**doc, "protocol": protocol, "machine": doc.get("machine") or machine()}
        self.doc["models"] = doc.get("models", [])

    def rows(self) -> dict[str, dict]:
        return {r["name"]: r for r in self.doc["models"]}

    def get(self, name: str) -> dict | None:
        return self.rows().get(name)

    def put(self, row: dict) -> None:
        """Add or replace the row of that name, and save. Rows saved by another process since this
        file was loaded (two benchmark invocations side by side) are kept, not overwritten."""
        if self.path.is_file():
            self.doc["models"] = json.loads(self.path.read_text()).get("models", [])
        self.doc["models"] = [r for r in self.doc["models"] if r["name"] != row["name"]] + [row]
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc, indent=2) + "\n")
        tmp.replace(self.path)


def hituav_weights(row: str) -> Path:
    """The weights of a row of `results/hituav.json` (the HIT-UAV benchmark), as a path."""
    rows = json.loads((RESULTS / "hituav.json").read_text())["models"]
    found = next((r for r in rows if r["name"] == row), None)
    if found is None:
        raise SystemExit(f"no {row} row in results/hituav.json: run benchmarks/hituav.py --only {row} first")
    path = Path(found["weights"])
    return path if path.is_absolute() else ROOT / path


def verdict(ok: bool) -> str:
    """A target's verdict in a results markdown."""
    return "**met**" if ok else "**not met**"


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> list[str]:
    """A markdown table: `columns` are (header, key, format) with format like "{:.4f}"."""
    out = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|" + " --- |" * len(columns)]
    for r in rows:
        cells = []
        for _, key, fmt in columns:
            v = r.get(key)
            cells.append("-" if v is None else fmt.format(v))
        out.append("| " + " | ".join(cells) + " |")
    return out


def machine_text(threads: int | None = None) -> str:
    """`machine()` on one line, for the results that record the machine as text (+ torch threads used)."""
    m = machine()
    parts = [
        m["cpu"],
        f"{m['cores']} cores",
        m["gpu"] or "no GPU",
        f"torch {m['torch']}",
        f"onnxruntime {m['onnxruntime']}",
    ]
    if threads:
        parts.append(f"{threads} threads")
    return ", ".join(parts)


def write_results(name: str | Path, doc: dict, markdown: str | list[str] | None = None) -> Path:
    """Save a script's results: `doc` as NAME.json (indented, atomically) and `markdown` as NAME.md.

    `name` is a file stem under RESULTS (`"speed_pruned"`), or a Path without suffix used as it
    is (a script's `--out`). `markdown` is the text or its lines (joined by newlines); the file
    ends in a newline. Returns the JSON path.
    """
    from pruned_yolo.utils.files import atomic_write, write_json

    base = Path(name) if isinstance(name, Path) else RESULTS / name
    path = write_json(base.with_name(base.name + ".json"), doc)
    if markdown is not None:
        text = markdown if isinstance(markdown, str) else "\n".join(markdown)
        text += "" if text.endswith("\n") else "\n"
        atomic_write(base.with_name(base.name + ".md"), lambda p: p.write_text(text))
    return path
