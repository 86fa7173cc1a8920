"""Deploy-ready: INT8 export with ONNX Runtime, `val` on .onnx files, and the parity report.

One tiny model is overfitted on a tiny dataset (a few seconds) so that mAP is far from 0 and
a faithful runtime has something to preserve.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from pruned_yolo import build_model, save_checkpoint
from pruned_yolo.cli.main import main
from pruned_yolo.data.config import load_data_config
from pruned_yolo.data.index import index_images
from pruned_yolo.data.val_dataset import ValDataset
from pruned_yolo.export import onnx_metadata
from pruned_yolo.export.parity import _check, format_parity
from pruned_yolo.export.quantize import float_nodes, is_int8

from .conftest import make_dataset, tiny_cfg

IMGSZ = 96


def _overfit(model, data: Path, steps: int = 150) -> None:
    """Fit `model` to every image of the tiny dataset (square letterbox at IMGSZ) with Adam."""
    from pruned_yolo.training.hyp import load_hyp
    from pruned_yolo.training.loss import DetectionLoss

    cfg = load_data_config(data)
    ims, targets = [], []
    for split in ("train", "val"):
        ds = ValDataset(index_images(cfg.images(split), cfg.nc), IMGSZ, 16, mode="square")
        for i in range(len(ds)):
            im, t, meta = ds[i]
            (h0, w0), r, (pw, ph) = meta["shape0"], meta["ratio"], meta["pad"]
            t = t.clone()
            t[:, 0] = len(ims)
            t[:, 2], t[:, 4] = (t[:, 2] * w0 * r + pw) / IMGSZ, t[:, 4] * w0 * r / IMGSZ
            t[:, 3], t[:, 5] = (t[:, 3] * h0 * r + ph) / IMGSZ, t[:, 5] * h0 * r / IMGSZ
            ims.append(im)
            targets.append(t)
    x, targets = torch.stack(ims).float() / 255, torch.cat(targets)
    loss = DetectionLoss(model, load_hyp(None), IMGSZ)
    opt = torch.optim.Adam(model.parameters(), 0.01)
    model.train()
    for _ in range(steps):
        total, _ = loss(model(x), targets)
        opt.zero_grad()
        total.sum().backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """An overfitted tiny checkpoint, its data, and its float and INT8 exports (through the CLI)."""
    root = tmp_path_factory.mktemp("deploy")
    data = make_dataset(root / "ds", n_train=4, n_val=4)
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    _overfit(model, data)
    ckpt = save_checkpoint(model, root / "fit.safetensors")
    out = root / "export" / "fit.onnx"
    argv = ["export", "--weights", str(ckpt), "--imgsz", str(IMGSZ), "--out", str(out)]
    assert main([*argv, "--int8", "--data", str(data), "--calib-images", "4"]) == 0
    return {"ckpt": ckpt, "data": data, "fp32": out, "int8": out.with_name("fit_int8.onnx"), "root": root}


def _val(weights, data, json_path, *extra) -> dict:
    argv = ["val", "--weights", str(weights), "--data", str(data), "--workers", "0", "--json", str(json_path)]
    assert main([*argv, *extra]) == 0
    return json.loads(Path(json_path).read_text())


def test_int8_export_scores_through_val(deployed):
    root = deployed["root"]
    torch_m = _val(deployed["ckpt"], deployed["data"], root / "t.json", "--imgsz", str(IMGSZ), "--letterbox", "square")
    int8_m = _val(deployed["int8"], deployed["data"], root / "q.json")
    assert int8_m["onnxruntime"] == {"precision": "int8", "imgsz": IMGSZ, "letterbox": "square"}
    assert torch_m["mAP50-95"] > 0.3  # the overfitted model finds its boxes
    assert int8_m["mAP50-95"] > 0.3  # INT8 still does: the decode stayed float
    assert int8_m["images"] == torch_m["images"] == 4


def test_float_onnx_val_equals_torch(deployed):
    root, data = deployed["root"], deployed["data"]
    square = ("--imgsz", str(IMGSZ), "--letterbox", "square")
    torch_m = _val(deployed["ckpt"], data, root / "t2.json", *square, "--save-json", str(root / "tp.json"))
    onnx_m = _val(deployed["fp32"], data, root / "o.json", "--save-json", str(root / "op.json"))  # square: automatic
    assert onnx_m["onnxruntime"]["precision"] == "fp32"
    assert abs(onnx_m["mAP50-95"] - torch_m["mAP50-95"]) <= 0.002
    assert abs(onnx_m["mAP50"] - torch_m["mAP50"]) <= 0.002
    tp, op = (json.loads((root / f).read_text()) for f in ("tp.json", "op.json"))
    assert len(tp) == len(op) > 0
    top = sorted(tp, key=lambda r: -r["score"])[:20]
    match = sorted(op, key=lambda r: -r["score"])[:20]
    for a, b in zip(top, match):
        assert a["category_id"] == b["category_id"] and a["image_id"] == b["image_id"]
        assert np.allclose(a["bbox"], b["bbox"], atol=0.05) and abs(a["score"] - b["score"]) < 1e-4


def test_int8_metadata_and_float_decode(deployed):
    fp_meta, q_meta = onnx_metadata(deployed["fp32"]), onnx_metadata(deployed["int8"])
    assert {k: q_meta[k] for k in fp_meta} == fp_meta  # names, strides, imgsz, arch hash ... carried over
    assert q_meta["quantization"] == "int8" and is_int8(deployed["int8"]) and not is_int8(deployed["fp32"])
    details = json.loads(q_meta["int8"])
    assert details["format"] == "QDQ" and details["per_channel"] and details["calibration_images"] == 4
    assert json.loads(q_meta["names"]) == ["0", "1", "2"]

    fp = onnx.load(str(deployed["fp32"])).graph
    decode, head = float_nodes(onnx.load(str(deployed["fp32"])))
    ops = {n.name: n.op_type for n in fp.node}
    assert len(head) == 3 and {"Sigmoid", "Pow", "Mul", "Add", "Concat"} <= {ops[n] for n in decode}
    q = onnx.load(str(deployed["int8"])).graph
    by_name = {n.name: n for n in q.node}
    kept = details["float_nodes"]  # the decode of the preprocessed graph (its grid constants are folded)
    assert set(kept) <= set(by_name)
    assert {n for n in decode if ops[n] in ("Sigmoid", "Pow")} <= set(kept)
    # every arithmetic node of the decode that is still there (grid constants are folded) stayed float
    computing = {n for n in decode if ops[n] in ("Sigmoid", "Pow", "Mul", "Add", "Sub", "Concat") and n in by_name}
    assert set(head) <= set(kept) and details["keep_head_float"]  # the default: the Detect convs stay float too
    final = next(n.name for n in fp.node if "output0" in n.output)
    assert computing <= set(kept) and final in computing  # the final Concat too
    decode = kept
    decode_outputs = {o for name in decode for o in by_name[name].output}
    for node in q.node:  # no decode result is ever quantized again, and the decode has no QLinear ops
        if node.op_type == "QuantizeLinear":
            assert node.input[0] not in decode_outputs, node.name
    assert not any(by_name[name].op_type.startswith("QLinear") for name in decode)
    assert sum(n.op_type == "QuantizeLinear" for n in q.node) > 10  # the body is quantized
    assert q.output[0].name == "output0"


def test_parity_report(deployed, tmp_path):
    out = tmp_path / "parity.json"
    argv = ["parity", "--weights", str(deployed["ckpt"]), "--data", str(deployed["data"]), "--imgsz", str(IMGSZ)]
    argv += ["--calib-images", "4", "--runs", "3", "--warmup", "1", "--workers", "0", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [(r["runtime"], r["precision"]) for r in rows] == [
        ("torch", "fp32"),
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
    ]
    for r in rows:
        assert r["median_ms"] > 0 and r["size_mb"] > 0 and 0 <= r["mAP50-95"] <= r["mAP50"] <= 1
    torch_row, fp32, int8 = rows
    assert torch_row["max_box_diff"] is None
    assert fp32["max_box_diff"] <= 1e-3 and fp32["max_score_diff"] <= 1e-3 and fp32["status"] == "ok"
    assert int8["max_score_diff"] > fp32["max_score_diff"]  # computed, and INT8 is not bit-exact
    assert abs(fp32["mAP50-95"] - torch_row["mAP50-95"]) <= 0.002
    assert int8["size_mb"] < 0.6 * fp32["size_mb"]
    assert report["ok"] and report["failures"] == []
    table = format_parity(report)
    assert table.count("\n| fit |") == 3 and "ORT int8" in table

    # the checks: a too tight tolerance fails ORT fp32, a large INT8 drop fails INT8
    rows = [dict(r) for r in rows]
    assert len(_check(rows, 1e-12, 0.02)) == 1 and rows[1]["status"] == "FAIL"
    rows[2]["mAP50-95"] = rows[1]["mAP50-95"] - 0.05
    failures = _check(rows, 1.0, 0.02)
    assert len(failures) == 1 and "INT8 mAP50-95" in failures[0] and rows[2]["status"] == "FAIL"


def test_parity_failure_is_one_error_line(deployed, monkeypatch, capsys):
    import pruned_yolo.export.parity as parity

    def failing(*args, **kwargs):
        rows = [
            {"model": "m", "runtime": rt, "precision": p, "mAP50": 0.5, "mAP50-95": 0.3, "median_ms": 1.0}
            | {"p10_ms": 1.0, "p90_ms": 1.0, "speedup": 1.0, "size_mb": 1.0}
            | {"max_box_diff": None if rt == "torch" else 0.5, "max_score_diff": None if rt == "torch" else 0.5}
            for rt, p in parity.RUNTIMES
        ]
        settings = {"data": "d.yaml", "split": "val", "imgsz": 96, "evaluator": "fast", "threads": 1, "runs": 1}
        failures = _check(rows, 1e-3, 0.02)
        return {"settings": {**settings, "tol": 1e-3, "int8_tol": 0.02}, "rows": rows, "failures": failures, "ok": 0}

    monkeypatch.setattr(parity, "parity_report", failing)
    argv = ["parity", "--weights", str(deployed["ckpt"]), "--data", str(deployed["data"])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: m: ONNX Runtime float32 differs from PyTorch")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["val", "--weights", "{root}/missing.onnx", "--data", "{data}"], "ONNX file not found"),
        (["val", "--weights", "{root}/garbage.onnx", "--data", "{data}"], "not a readable ONNX model"),
        (["val", "--weights", "{fp32}", "--data", "{data}", "--letterbox", "rect"], "static 96x96 input"),
        (["val", "--weights", "{fp32}", "--data", "{data}", "--imgsz", "64"], "static 96x96 input"),
        (["export", "--weights", "{ckpt}", "--int8", "--out", "{root}/x.onnx"], "--int8 needs --data"),
        (
            ["export", "--weights", "{ckpt}", "--int8", "--data", "{root}/no.yaml", "--out", "{root}/x.onnx"],
            "not found",
        ),
        (["export", "--weights", "{ckpt}", "--data", "{data}", "--out", "{root}/x.onnx"], "only apply with --int8"),
        (["parity", "--weights", "{fp32}", "--data", "{data}"], "needs the checkpoint"),
    ],
)
def test_bad_deploy_input_is_one_error_line(deployed, argv, message, capsys):
    (deployed["root"] / "garbage.onnx").write_bytes(b"not an onnx file")
    argv = [a.format(**{k: str(v) for k, v in deployed.items()}) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (deployed["root"] / "x.onnx").exists()
