import json

import cv2
import numpy as np
import pytest
import torch

from pruned_yolo import load_model, save_checkpoint
from pruned_yolo.cli.main import main

from .conftest import COCO128, YOLOV5N_PT, needs_shared


@pytest.fixture
def tiny_ckpt(tiny_model, tmp_path):
    return save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("val", "predict", "info", "convert-checkpoint"):
        assert cmd in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["val", "--weights", "missing.safetensors", "--data", "x.yaml"], "checkpoint not found"),
        (["info", "--cfg", "yolov9z"], "neither a file nor a shipped config"),
        (["predict", "--weights", "{ckpt}", "--source", "no/such/dir"], "source not found"),
        (["val", "--weights", "{ckpt}", "--data", "missing.yaml"], "data YAML not found"),
    ],
)
def test_bad_input_is_one_error_line(argv, message, tiny_ckpt, capsys):
    argv = [a.replace("{ckpt}", str(tiny_ckpt)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_info_json(tmp_path, capsys):
    out = tmp_path / "info.json"
    assert main(["info", "--cfg", "yolov5n", "--json", str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["params"] == 1_872_157 and 4.4 < info["gflops"] < 4.55
    assert len(info["layers"]) == 25 and info["layers"][2]["args"]["bottlenecks"] == [[16, 16]]
    assert "GFLOPs" in capsys.readouterr().out


def test_predict_writes_images_txt_and_json(tiny_ckpt, tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"im{i}.jpg"), np.random.default_rng(i).integers(0, 255, (70, 90 + 10 * i, 3), np.uint8))
    args = [
        "predict",
        "--weights",
        str(tiny_ckpt),
        "--source",
        str(src),
        "--imgsz",
        "64",
        "--conf",
        "0.0001",
        "--project",
        str(tmp_path / "runs"),
        "--save-txt",
        "--save-json",
        "--batch",
        "2",
        "--workers",
        "0",
    ]
    assert main(args) == 0
    out = tmp_path / "runs" / "exp"
    assert sorted(p.name for p in out.glob("*.jpg")) == ["im0.jpg", "im1.jpg", "im2.jpg"]
    preds = json.loads((out / "predictions.json").read_text())
    assert [p["image"] for p in sorted(preds, key=lambda p: p["image"])] == ["im0.jpg", "im1.jpg", "im2.jpg"]
    for p in preds:
        for d in p["detections"]:
            x1, y1, x2, y2 = d["xyxy"]
            assert 0 <= x1 <= x2 <= p["width"] and 0 <= y1 <= y2 <= p["height"]
    assert len(list((out / "labels").glob("*.txt"))) >= 1


def test_val_on_tiny_data_writes_json(tiny_ckpt, tiny_data, tmp_path, capsys):
    out = tmp_path / "m.json"
    preds = tmp_path / "p.json"
    args = [
        "val",
        "--weights",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--imgsz",
        "64",
        "--workers",
        "0",
        "--json",
        str(out),
        "--save-json",
        str(preds),
        "--per-class",
    ]
    assert main(args) == 0
    m = json.loads(out.read_text())
    assert {"mAP50", "mAP50-95", "precision", "recall", "speed_ms", "images"} <= set(m)
    assert m["images"] == 2 and 0 <= m["mAP50-95"] <= m["mAP50"] <= 1
    assert isinstance(json.loads(preds.read_text()), list)
    assert "Speed:" in capsys.readouterr().out


def test_val_bn_recal_re_estimates_statistics_first(tiny_ckpt, tiny_data, tmp_path, capsys, caplog):
    """--bn-recal N: statistics from N train batches, then the usual scores; one clear error for ONNX."""
    from pruned_yolo.evaluation.validator import Validator

    base = ["val", "--weights", str(tiny_ckpt), "--data", str(tiny_data), "--imgsz", "64", "--workers", "0"]
    with caplog.at_level("INFO", logger="pruned_yolo"):
        assert main([*base, "--bn-recal", "1", "--json", str(tmp_path / "m.json")]) == 0
    assert "re-estimated on 1 train batches" in caplog.text
    assert 0 <= json.loads((tmp_path / "m.json").read_text())["mAP50-95"] <= 1
    model = load_model(tiny_ckpt)
    assert Validator(str(tiny_data), "train", 64, batch_size=2, workers=0).recalibrate_bn(model, 1) == 1
    assert {int(m.num_batches_tracked) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1}
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    capsys.readouterr()
    assert main(["val", "--weights", str(onnx), "--data", str(tiny_data), "--bn-recal", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bn-recal" in err[0], err


@needs_shared
@pytest.mark.slow
def test_val_yolov5n_on_coco128_matches_reference(tmp_path):
    """Acceptance: 0.343 / 0.529 (+-0.005) from an independent pycocotools evaluator."""
    out = tmp_path / "m.json"
    assert main(["val", "--weights", str(YOLOV5N_PT), "--data", str(COCO128), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert abs(m["mAP50-95"] - 0.343) <= 0.005 and abs(m["mAP50"] - 0.529) <= 0.005
    assert abs(m["fast"]["mAP50-95"] - m["mAP50-95"]) <= 0.01
