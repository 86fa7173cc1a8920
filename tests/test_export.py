"""ONNX export: checker, ONNX Runtime vs torch, dynamic shapes, metadata, errors."""

import json

import onnx
import pytest
import torch

from pruned_yolo import save_checkpoint
from pruned_yolo.cli.main import main
from pruned_yolo.errors import PrunedYoloError
from pruned_yolo.export import export_onnx, onnx_metadata, ort_session, verify_onnx
from pruned_yolo.models import build_model, load_model_cfg


def n_out(h, w, strides=(8, 16, 32), na=3):
    return na * sum((h // s) * (w // s) for s in strides)


def test_static_export_matches_torch(tiny_model, tmp_path):
    path = export_onnx(tiny_model, tmp_path / "tiny.onnx", imgsz=64, source="tiny.safetensors")
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["output0"]
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)  # fused
    check = verify_onnx(tiny_model, path)
    assert check.shape == (1, n_out(64, 64), 5 + tiny_model.nc)
    assert check.ok(1e-3) and check.max_abs_scores < 1e-4
    exact = verify_onnx(tiny_model, path, float64=True)  # both runtimes against torch in float64
    assert exact.ort_vs_fp64 < 1e-4 and exact.torch32_vs_fp64 < 1e-4 and "float64" in str(exact)
    # the caller's model is left as it was
    assert not tiny_model.is_fused and not tiny_model.detect.export


def test_metadata(tiny_model, tmp_path):
    tiny_model.names = ["cat", "dog", "bird"]
    path = export_onnx(tiny_model, tmp_path / "tiny.onnx", imgsz=(64, 96), source="tiny.safetensors")
    meta = onnx_metadata(path)
    assert json.loads(meta["names"]) == ["cat", "dog", "bird"]
    assert json.loads(meta["stride"]) == [8, 16, 32]
    assert json.loads(meta["imgsz"]) == [64, 96]
    assert meta["source"] == "tiny.safetensors" and len(meta["arch_hash"]) == 16
    assert int(meta["params"]) == sum(p.numel() for p in tiny_model.parameters())
    assert float(meta["gflops"]) > 0


def test_dynamic_export_other_sizes_and_batch(tiny_model, tmp_path):
    path = export_onnx(tiny_model, tmp_path / "dyn.onnx", imgsz=64, dynamic=True)
    shape = ort_session(path).get_inputs()[0].shape
    assert shape[1] == 3 and all(isinstance(d, str) for d in (shape[0], shape[2], shape[3]))
    for imgsz, batch in ((64, 1), ((96, 128), 2), (32, 1)):
        check = verify_onnx(tiny_model, path, imgsz, batch)
        h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
        assert check.shape == (batch, n_out(h, w), 8)
        assert check.ok(1e-3), check


def test_yolov5l_v4_exports(tmp_path):
    """The seed paper's v4.0 layout (Focus stem, SPP) at 1/8 width: same graph types, fast."""
    cfg = dict(load_model_cfg("yolov5l-v4"))
    cfg.update(nc=3, width_multiple=0.125, depth_multiple=0.33)
    torch.manual_seed(0)
    model = build_model(cfg)
    path = export_onnx(model, tmp_path / "v4.onnx", imgsz=64)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Slice", "MaxPool", "Concat", "Conv"} <= ops
    kernels = {tuple(a.ints) for n in onnx.load(str(path)).graph.node if n.op_type == "MaxPool" for a in n.attribute}
    assert {(5, 5), (9, 9), (13, 13)} <= kernels  # SPP's parallel pools
    assert verify_onnx(model, path).ok(1e-3)


def test_bad_sizes_and_half_on_cpu(tiny_model, tmp_path):
    with pytest.raises(PrunedYoloError, match="multiple of the model stride 32"):
        export_onnx(tiny_model, tmp_path / "x.onnx", imgsz=100)
    with pytest.raises(PrunedYoloError, match="CUDA"):
        export_onnx(tiny_model, tmp_path / "x.onnx", imgsz=64, half=True, device="cpu")
    assert not (tmp_path / "x.onnx").exists()


@pytest.fixture
def tiny_ckpt(tiny_model, tmp_path):
    return save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")


def test_cli_export(tiny_ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # default output: runs/export/<weights stem>.onnx
    assert main(["export", "--weights", str(tiny_ckpt), "--imgsz", "64", "--dynamic"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "runs" / "export" / "tiny.onnx").is_file()
    assert "ONNX checker passed" in out and out.count("ONNX Runtime vs torch") == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--weights", "missing.safetensors"], "checkpoint not found"),
        (["--weights", "{ckpt}", "--half"], "CUDA"),
        (["--weights", "{ckpt}", "--imgsz", "65"], "multiple of the model stride"),
        (["--weights", "{ckpt}", "--imgsz", "64", "64", "64"], "--imgsz takes one value"),
    ],
)
def test_cli_export_errors(argv, message, tiny_ckpt, capsys):
    argv = ["export"] + [a.replace("{ckpt}", str(tiny_ckpt)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_cli_unknown_format(tiny_ckpt, capsys):
    assert main(["export", "--weights", str(tiny_ckpt), "--format", "tflite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice: 'tflite'" in err[0]


def test_simplify_needs_onnxslim(tiny_model, tmp_path):
    try:
        import onnxslim  # noqa: F401
    except ImportError:
        with pytest.raises(PrunedYoloError, match="onnxslim"):
            export_onnx(tiny_model, tmp_path / "s.onnx", imgsz=64, simplify=True)
    else:
        assert verify_onnx(tiny_model, export_onnx(tiny_model, tmp_path / "s.onnx", imgsz=64, simplify=True)).ok()
