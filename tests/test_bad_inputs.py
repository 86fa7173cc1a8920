"""Bad command-line values: exit code 2, one line on stderr naming the option, nothing written.

Also the related fixes: predict's distinct output names, prune/convert never overwriting their
input, pruning targets and importance references checked in the library, file modes of
atomic writes, and --resume from another working directory.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pruned_yolo import build_model, load_model, save_checkpoint
from pruned_yolo.cli.main import main
from pruned_yolo.errors import ConfigError, PrunedYoloError
from pruned_yolo.inference.predictor import output_names
from pruned_yolo.pruning import PruningError, prune
from pruned_yolo.pruning.importance import get_importance
from pruned_yolo.training import TrainConfig

from .conftest import make_dataset, tiny_cfg


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A tiny checkpoint, dataset and an existing folder; the working directory is inside tmp_path."""
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(tiny_cfg()), tmp_path / "in" / "tiny.safetensors")
    data = make_dataset(tmp_path / "ds", n_train=2, n_val=2, size=64)
    (tmp_path / "folder").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return {
        "ckpt": str(ckpt),
        "data": str(data),
        "folder": str(tmp_path / "folder"),
        "images": str(tmp_path / "ds" / "images" / "val"),
    }


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


W = ["--weights", "{ckpt}"]
TRAIN = ["train", "--data", "{data}", "--cfg", "yolov5n"]
PRUNE = ["prune", *W, "--out", "pruned"]
VAL = ["val", *W, "--data", "{data}", "--workers", "0"]
PREDICT = ["predict", *W, "--source", "{images}", "--workers", "0"]
BENCH = ["bench", *W, "--runtime", "torch"]

BAD = [
    # train: checked by TrainConfig (so the Python API gets the same checks)
    ([*TRAIN, "--patience", "-1"], "--patience"),
    ([*TRAIN, "--workers", "-1"], "--workers"),
    ([*TRAIN, "--threads", "-2"], "--threads"),
    ([*TRAIN, "--threads", "0"], "--threads"),
    ([*TRAIN, "--nbs", "0"], "--nbs"),
    ([*TRAIN, "--device", "banana"], "--device"),
    ([*TRAIN, "--imgsz", "33"], "--imgsz"),
    ([*TRAIN, "--epochs", "0"], "--epochs"),
    ([*TRAIN, "--seed", "-1"], "--seed"),
    # prune: targets checked once, in pruning.pruner.check_targets
    ([*PRUNE, "--target-gflops", "nan"], "target_gflops"),
    ([*PRUNE, "--target-gflops", "inf"], "target_gflops"),
    ([*PRUNE, "--target-gflops", "0"], "target_gflops"),
    ([*PRUNE, "--target-gflops", "-1"], "target_gflops"),
    ([*PRUNE, "--target-flops-ratio", "nan"], "target_flops_ratio"),
    ([*PRUNE, "--target-params-ratio", "inf"], "target_params_ratio"),
    ([*PRUNE, "--channel-ratio", "nan"], "channel_ratio"),
    ([*PRUNE, "--channel-ratio", "0.3", "--importance", "os:system"], "os:system"),
    ([*PRUNE, "--channel-ratio", "0.3", "--importance", "json:dumps"], "json:dumps"),
    ([*PRUNE, "--channel-ratio", "0.3", "--importance", "collections:OrderedDict"], "collections:OrderedDict"),
    ([*PRUNE, "--channel-ratio", "0.3", "--imgsz", "33"], "--imgsz"),
    ([*PRUNE, "--channel-ratio", "0.3", "--json", "{folder}"], "--json"),
    (["prune", *W, "--channel-ratio", "0.3", "--out", "{ckpt}"], "--weights"),
    (["prune", *W, "--channel-ratio", "0.3", "--out", "x.pt"], "--out"),
    # val
    ([*VAL, "--imgsz", "33"], "--imgsz"),
    ([*VAL, "--imgsz", "0"], "--imgsz"),
    ([*VAL, "--imgsz", "-128"], "--imgsz"),
    ([*VAL, "--imgsz", "64.5"], "--imgsz"),
    ([*VAL, "--batch", "0"], "--batch"),
    ([*VAL, "--batch", "-1"], "--batch"),
    ([*VAL, "--conf", "2"], "--conf"),
    ([*VAL, "--conf", "-1"], "--conf"),
    ([*VAL, "--conf", "nan"], "--conf"),
    ([*VAL, "--iou", "1.5"], "--iou"),
    ([*VAL, "--max-det", "-5"], "--max-det"),
    ([*VAL, "--workers", "-1"], "--workers"),
    ([*VAL, "--threads", "-2"], "--threads"),
    ([*VAL, "--json", "{folder}"], "--json"),
    ([*VAL, "--save-json", "{folder}"], "--save-json"),
    ([*VAL, "--device", "banana"], "--device"),
    ([*VAL, "--letterbox", "round"], "--letterbox"),
    # export
    (["export", *W, "--opset", "5"], "opset"),
    (["export", *W, "--opset", "99"], "opset"),
    (["export", *W, "--opset", "0"], "opset"),
    (["export", *W, "--out", "{folder}"], "--out"),
    (["export", *W, "--out", "{ckpt}"], "--out"),
    (["export", *W, "--imgsz", "50"], "--imgsz"),
    (["export", *W, "--imgsz", "64", "50"], "--imgsz"),
    (["export", *W, "--batch", "0"], "--batch"),
    (["export", *W, "--tol", "-1"], "--tol"),
    # info
    (["info", "--cfg", "yolov5n", "--nc", "-3"], "--nc"),
    (["info", "--cfg", "yolov5n", "--imgsz", "33"], "--imgsz"),
    (["info", "--cfg", "yolov5n", "--json", "{folder}"], "--json"),
    # predict
    ([*PREDICT, "--imgsz", "50"], "--imgsz"),
    ([*PREDICT, "--conf", "2"], "--conf"),
    ([*PREDICT, "--classes", "-1"], "--classes"),
    ([*PREDICT, "--batch", "0"], "--batch"),
    (["predict", *W, "--source", "no/such/dir"], "no/such/dir"),
    # convert-checkpoint: a name with a suffix is a file
    (["convert-checkpoint", "{ckpt}", "out/conv.pt"], "out/conv.pt"),
    (["convert-checkpoint", "{ckpt}", "{ckpt}"], "SRC"),
    # demo: checked while parsing, before the synthetic data is generated
    (["demo", "--imgsz", "100"], "--imgsz"),
    (["demo", "--batch", "0"], "--batch"),
    (["demo", "--workers", "-1"], "--workers"),
    (["demo", "--json", "{folder}"], "--json"),
    # bench
    ([*BENCH, "--runs", "0"], "--runs"),
    ([*BENCH, "--warmup", "-1"], "--warmup"),
    ([*BENCH, "--imgsz", "50"], "--imgsz"),
    ([*BENCH, "--threads", "0"], "--threads"),
    ([*BENCH, "--json", "{folder}"], "--json"),
]


@pytest.mark.parametrize("argv, needle", BAD, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD])
def test_bad_value_is_one_line_exit_2_nothing_written(argv, needle, env, tmp_path, capsys):
    argv = [a.format(**env) for a in argv]
    needle = needle.format(**env)
    before = _files(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error:") and needle in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert _files(tmp_path) == before  # nothing created, nothing changed


def test_patience_zero_means_no_early_stopping(env):
    assert TrainConfig(data=env["data"], cfg="yolov5n", patience=0).patience == 0
    with pytest.raises(ConfigError, match="no early stopping"):
        TrainConfig(data=env["data"], cfg="yolov5n", patience=-1)


# -- predict: one output per input, whatever the names ------------------------------------------
def test_output_names_are_distinct():
    names = output_names([Path(p) for p in ("a/x.jpg", "b/x.jpg", "a/x.png", "a/y.jpg")])
    assert names[Path("a/y.jpg")] == "y"  # no clash: the stem, as before
    assert len(set(names.values())) == 4
    assert output_names([Path("d/x.jpg"), Path("d/x.png")]) == {Path("d/x.jpg"): "x_jpg", Path("d/x.png"): "x_png"}
    assert output_names([Path("a/x.jpg"), Path("b/x.jpg")]) == {Path("a/x.jpg"): "a_x", Path("b/x.jpg"): "b_x"}
    # a renamed clash never takes the name of another input
    names = output_names([Path("d/x.jpg"), Path("d/x.png"), Path("d/x_png.jpg")])
    assert len(set(names.values())) == 3 and names[Path("d/x_png.jpg")] == "x_png"


def test_predict_same_stems_unique_outputs_and_ids_and_warns_unreadable(env, tmp_path, caplog):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for rel in ("a/x.jpg", "b/x.jpg", "a/x.png", "a/y.jpg"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src / rel), rng.integers(0, 255, (60, 80, 3), np.uint8))
    (src / "a" / "broken.jpg").write_bytes(b"not an image")
    argv = ["predict", "--weights", env["ckpt"], "--source", str(src), "--imgsz", "64", "--conf", "0.0001"]
    argv += ["--project", str(tmp_path / "runs"), "--save-txt", "--save-json", "--workers", "0"]
    assert main(argv) == 0
    out = tmp_path / "runs" / "exp"
    assert len(list(out.glob("*.jpg"))) == 4 and len(list((out / "labels").glob("*.txt"))) == 4
    preds = json.loads((out / "predictions.json").read_text())
    assert len(preds) == 4
    assert len({p["id"] for p in preds}) == 4 and len({p["path"] for p in preds}) == 4
    for p in preds:  # each id names that image's own outputs
        assert (out / f"{p['id']}.jpg").is_file() and (out / "labels" / f"{p['id']}.txt").is_file()
    warnings = [r.getMessage() for r in caplog.records if "broken.jpg" in r.getMessage()]
    assert len(warnings) == 1 and "unreadable" in warnings[0]


# -- never overwrite the input -------------------------------------------------------------------
def test_prune_out_equal_to_weights_is_refused(env, tmp_path, capsys):
    ckpt = Path(env["ckpt"])
    before = ckpt.read_bytes()
    assert main(["prune", "--weights", str(ckpt), "--channel-ratio", "0.3", "--out", str(ckpt)]) == 2
    assert "would overwrite the input --weights" in capsys.readouterr().err
    # the same file spelled differently
    other = os.path.relpath(ckpt.parent / ".." / "in" / ckpt.name)
    assert main(["prune", "--weights", str(ckpt), "--channel-ratio", "0.3", "--out", other]) == 2
    assert ckpt.read_bytes() == before and sorted(p.name for p in ckpt.parent.iterdir()) == [ckpt.name]
    # a folder gets <stem>_pruned.safetensors, beside the input
    assert main(["prune", "--weights", str(ckpt), "--channel-ratio", "0.3", "--out", str(ckpt.parent)]) == 0
    assert load_model(ckpt.parent / "tiny_pruned.safetensors").meta["history"][-1]["action"] == "prune"
    assert ckpt.read_bytes() == before


def test_convert_checkpoint_file_or_folder(env, tmp_path):
    assert main(["convert-checkpoint", env["ckpt"], "out/conv.safetensors"]) == 0
    assert Path("out/conv.safetensors").is_file()
    assert main(["convert-checkpoint", env["ckpt"], "out2"]) == 0
    assert Path("out2/tiny.safetensors").is_file()
    assert main(["convert-checkpoint", env["ckpt"], "out/conv.pt"]) == 2
    assert not Path("out/conv.pt").exists()


# -- library checks (the CLI relies on them) -------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_gflops": math.nan},
        {"target_gflops": math.inf},
        {"target_gflops": 0.0},
        {"target_flops_ratio": math.nan},
        {"target_params_ratio": 1.0},
        {"channel_ratio": math.nan},
        {"channel_ratio": 0.3, "target_gflops": 0.5},
    ],
)
def test_prune_refuses_bad_targets(kwargs, tiny_model):
    with pytest.raises(PruningError):
        prune(tiny_model, **kwargs)


def test_importance_reference_must_be_a_python_function_of_conv_and_bn():
    for ref in ("os:system", "math:sqrt", "collections:OrderedDict", "json:dumps"):
        with pytest.raises(ConfigError, match=ref):
            get_importance(ref)
    fn = get_importance("pruned_yolo.pruning.importance:l1_importance")
    assert fn.__name__ == "l1_importance"


def test_atomic_write_gives_the_umask_mode(tmp_path):
    from pruned_yolo.utils.files import write_json

    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "a.json", {"x": 1})
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert write_json(tmp_path / "b.json", {}).stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    ckpt = save_checkpoint(build_model(tiny_cfg()), tmp_path / "c.safetensors")
    assert ckpt.stat().st_mode & 0o777 == 0o666 & ~old


# -- --resume from another working directory ----------------------------------------------------
def test_data_path_is_stored_absolute_and_legacy_runs_resume_from_anywhere(env, tmp_path, monkeypatch):
    from pruned_yolo.training import trainer as trainer_mod

    monkeypatch.chdir(tmp_path)
    config = TrainConfig(data="ds/data.yaml", cfg="yolov5n", epochs=2)
    assert config.to_json()["data"] == str(tmp_path / "ds" / "data.yaml")

    # a run saved with a relative data path, resumed from another folder
    run = tmp_path / "runs" / "train" / "exp"
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "last_state.safetensors").write_bytes(b"")
    saved = {**config.to_json(), "data": "ds/data.yaml", "project": "runs/train"}
    doc = {"config": saved, "hyp": "scratch-low", "epoch": 1}
    monkeypatch.setattr(trainer_mod, "load_state", lambda path: (doc, {}))
    monkeypatch.chdir(env["folder"])
    resumed = trainer_mod.Trainer.resume(run)
    assert Path(resumed.config.data) == tmp_path / "ds" / "data.yaml"


def test_select_device_errors_are_project_errors():
    with pytest.raises(PrunedYoloError, match="--device"):
        TrainConfig(data="x.yaml", cfg="yolov5n", device="banana")
