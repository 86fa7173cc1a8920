"""Deployment parity: PyTorch float32, ONNX Runtime float32 and ONNX Runtime INT8, side by side.

For each checkpoint, `parity_report` exports a static float ONNX file at `imgsz`, quantizes
it to INT8 (`quantize_onnx`, calibrated on the data's train split), then gives per runtime:

* mAP50 and mAP50-95 on the validation split (COCO protocol, pycocotools by default). All
  three are validated alike, with square letterboxing to imgsz x imgsz, the only input a
  static export takes, so that the runtime is the only difference;
* the median latency (batch 1), all models and runtimes timed interleaved in one run
  (`benchmark.benchmark_models`);
* the file size (the checkpoint for PyTorch);
* the largest difference to PyTorch of the raw decoded outputs before NMS on the
  validation images: boxes (x, y, w, h) divided by the input size, scores as they are.

`ok` is False, with a reason in `failures`, when ONNX Runtime float32 differs from PyTorch
by more than `tol` or when INT8 loses more than `int8_tol` mAP50-95 to ONNX Runtime float32.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import PrunedYoloError

LOGGER = logging.getLogger("pruned_yolo")

RUNTIMES = (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"))


class _ReferenceWithDiffs:
    """The prepared torch model as the validator's model; on each batch it also runs the
    ONNX models and keeps the largest output differences to torch."""

    def __init__(self, model: torch.nn.Module, others: dict[str, Callable]):
        self.model, self.others = model, others
        self.nc, self.names = model.nc, model.names
        self.diffs = {k: {"boxes": 0.0, "scores": 0.0} for k in others}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        ref = (out[0] if isinstance(out, tuple) else out).double()
        scale = torch.tensor([x.shape[3], x.shape[2]] * 2, dtype=torch.float64)
        for k, other in self.others.items():
            d = (other(x).double() - ref).abs()
            self.diffs[k]["boxes"] = max(self.diffs[k]["boxes"], float((d[..., :4] / scale).max()))
            self.diffs[k]["scores"] = max(self.diffs[k]["scores"], float(d[..., 4:].max()))
        return out


def parity_report(
    weights: str | Path,
    data: str | Path,
    imgsz: int = 640,
    compare: list[str | Path] | tuple = (),
    threads: int | None = None,
    calib_images: int = 200,
    runs: int = 30,
    warmup: int = 5,
    tol: float = 1e-3,
    int8_tol: float = 0.02,
    split: str = "val",
    batch: int = 16,
    workers: int = 2,
    evaluator: str = "pycocotools",
    workdir: str | Path | None = None,
    keep_head_float: bool = True,
    progress: bool = False,
) -> dict:
    """Plain-data parity table of `weights` and every `compare` checkpoint (see module doc).

    Returns {"settings": {...}, "rows": [...], "failures": [...], "ok": bool}; each row has
    `model`, `weights`, `runtime`, `precision`, `file`, `size_mb`, `mAP50`, `mAP50-95`,
    `median_ms`, `p10_ms`, `p90_ms`, `speedup` (PyTorch median / row median, same model),
    `max_box_diff` and `max_score_diff` (None for PyTorch itself) and `status`.
    ONNX files go to `workdir` (default: a temporary folder, removed afterwards).
    """
    from ..benchmark import benchmark_models, default_threads, make_runner
    from ..checkpoint import load_model
    from ..evaluation.validator import Validator
    from ..utils.torch_utils import prepare_for_inference
    from .onnx import check_imgsz, export_onnx
    from .quantize import quantize_onnx
    from .runtime import OnnxModel

    paths = [Path(w) for w in [weights, *compare]]
    for p in paths:
        if p.suffix.lower() == ".onnx":
            raise PrunedYoloError(f"{p}: parity needs the checkpoint (the PyTorch reference), not an .onnx file")
        if not p.is_file():
            raise PrunedYoloError(f"weights not found: {p}")
    if not isinstance(imgsz, int):
        raise PrunedYoloError(f"imgsz must be one integer (square input), got {imgsz!r}")
    stems = [p.stem for p in paths]
    labels = [s if stems.count(s) == 1 else f"{s}#{i}" for i, s in enumerate(stems)]
    threads = default_threads(threads)
    official = evaluator != "fast"
    validator = Validator(data, split, imgsz, batch, workers=workers, letterbox="square")
    rows: list[dict] = []
    runners = {}
    with tempfile.TemporaryDirectory(prefix="pruned-yolo-parity-") as tmp:
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for label, path in zip(labels, paths):
            model = load_model(path)
            check_imgsz(model, imgsz)
            name = label.replace("#", "_")
            LOGGER.info(f"{label}: exporting float32 ONNX and quantizing to INT8 ({calib_images} calibration images)")
            fp32 = export_onnx(model, work / f"{name}.onnx", imgsz, source=path.name)
            int8 = quantize_onnx(
                fp32, work / f"{name}_int8.onnx", data, calib_images=calib_images, keep_head_float=keep_head_float
            )
            ort32, ort8 = OnnxModel(fp32, threads), OnnxModel(int8, threads)
            ref = _ReferenceWithDiffs(prepare_for_inference(model, "cpu"), {"fp32": ort32, "int8": ort8})

            def score(m, prepared: bool = True) -> dict:
                return validator(
                    m,
                    "cpu",
                    official=official,
                    coco_backend=evaluator if official else "pycocotools",
                    progress=progress,
                    prepared=prepared,
                )

            LOGGER.info(f"{label}: validating PyTorch float32, ONNX Runtime float32 and INT8 on {split}")
            metrics = {"torch": score(ref), "fp32": score(ort32), "int8": score(ort8)}
            files = {"torch": path, "fp32": fp32, "int8": int8}
            for (runtime, precision), key in zip(RUNTIMES, ("torch", "fp32", "int8")):
                diff = ref.diffs.get(key)
                rows.append(
                    {
                        "model": label,
                        "weights": str(path),
                        "runtime": runtime,
                        "precision": precision,
                        "file": str(files[key]) if workdir or key == "torch" else files[key].name,
                        "size_mb": round(files[key].stat().st_size / 2**20, 3),
                        "mAP50": round(float(metrics[key]["mAP50"]), 5),
                        "mAP50-95": round(float(metrics[key]["mAP50-95"]), 5),
                        "max_box_diff": None if diff is None else float(f"{diff['boxes']:.3e}"),
                        "max_score_diff": None if diff is None else float(f"{diff['scores']:.3e}"),
                    }
                )
            del ref, ort32, ort8
            runners[f"{label} torch"] = make_runner(path, "torch", imgsz, 1, threads, name=label)
            runners[f"{label} fp32"] = make_runner(fp32, "onnxruntime", imgsz, 1, threads, name=label)
            runners[f"{label} int8"] = make_runner(int8, "onnxruntime", imgsz, 1, threads, name=label)
        LOGGER.info(f"timing {len(runners)} runs interleaved: {warmup} warm-up + {runs} each, {threads} thread(s)")
        timings = benchmark_models(runners, imgsz, 1, warmup, runs, progress=LOGGER.info if progress else None)
    for row in rows:
        key = "torch" if row["runtime"] == "torch" else row["precision"]
        t = timings[f"{row['model']} {key}"]
        ref_t = timings[f"{row['model']} torch"]
        row.update(
            median_ms=round(t.median_ms, 3),
            p10_ms=round(t.p10_ms, 3),
            p90_ms=round(t.p90_ms, 3),
            speedup=round(ref_t.median_ms / t.median_ms, 3),
        )
    failures = _check(rows, tol, int8_tol)
    settings = {
        "data": str(data),
        "split": split,
        "imgsz": imgsz,
        "letterbox": "square",
        "evaluator": evaluator if official else "fast",
        "threads": threads,
        "runs": runs,
        "warmup": warmup,
        "calib_images": calib_images,
        "keep_head_float": keep_head_float,
        "tol": tol,
        "int8_tol": int8_tol,
        "onnxruntime": __import__("onnxruntime").__version__,
        "torch": torch.__version__,
    }
    return {"settings": settings, "rows": rows, "failures": failures, "ok": not failures}


def _check(rows: list[dict], tol: float, int8_tol: float) -> list[str]:
    """Set each row's `status` and return the failure messages."""
    failures = []
    by_model: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_model.setdefault(r["model"], {})["torch" if r["runtime"] == "torch" else r["precision"]] = r
        r["status"] = "ok"
    for model, rs in by_model.items():
        fp32, int8 = rs["fp32"], rs["int8"]
        diff = max(fp32["max_box_diff"], fp32["max_score_diff"])
        if not diff <= tol:
            fp32["status"] = "FAIL"
            failures.append(
                f"{model}: ONNX Runtime float32 differs from PyTorch by {diff:.2e} > tolerance {tol:g} "
                f"(boxes / input size {fp32['max_box_diff']:.2e}, scores {fp32['max_score_diff']:.2e})"
            )
        drop = fp32["mAP50-95"] - int8["mAP50-95"]
        if drop > int8_tol:
            int8["status"] = "FAIL"
            failures.append(
                f"{model}: INT8 mAP50-95 {int8['mAP50-95']:.4f} is {drop:.4f} below float32 "
                f"{fp32['mAP50-95']:.4f} (--int8-tol {int8_tol:g})"
            )
    return failures


def format_parity(report: dict) -> str:
    """The report as a markdown table, with the settings and the failures below it."""
    s = report["settings"]
    head = (
        "| model | runtime | mAP50 | mAP50-95 | median ms | p10-p90 ms | speed-up | size MB "
        "| max box diff | max score diff | status |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]

    def sci(v):
        return "-" if v is None else f"{v:.1e}"

    for r in report["rows"]:
        runtime = "PyTorch fp32" if r["runtime"] == "torch" else f"ORT {r['precision']}"
        lines.append(
            f"| {r['model']} | {runtime} | {r['mAP50']:.4f} | {r['mAP50-95']:.4f} | {r['median_ms']:.2f} "
            f"| {r['p10_ms']:.2f}-{r['p90_ms']:.2f} | {r['speedup']:.2f}x | {r['size_mb']:.2f} "
            f"| {sci(r['max_box_diff'])} | {sci(r['max_score_diff'])} | {r['status']} |"
        )
    lines.append("")
    lines.append(
        f"{s['split']} split of {Path(s['data']).name}, {s['imgsz']}x{s['imgsz']} square letterbox, "
        f"{s['evaluator']} mAP; latency: batch 1, {s['threads']} thread(s), median of {s['runs']} interleaved runs; "
        "speed-up: PyTorch median / row median; diffs: max |output - PyTorch| before NMS "
        f"(boxes / input size, scores); tolerance {s['tol']:g} (ORT fp32), INT8 mAP50-95 drop {s['int8_tol']:g}"
    )
    for f in report["failures"]:
        lines.append(f"FAIL: {f}")
    return "\n".join(lines)
