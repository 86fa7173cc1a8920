"""`pruned-yolo prune`: output naming, JSON, table, and one-line errors."""

import json

import pytest
import torch

from pruned_yolo import load_model, save_checkpoint
from pruned_yolo.cli.main import main

from .test_pruning_groups import tiny


@pytest.fixture
def ckpt(tmp_path):
    return save_checkpoint(tiny(), tmp_path / "tiny.safetensors")


def test_prune_to_folder_writes_checkpoint_json_and_table(ckpt, tmp_path, capsys):
    out_dir, js = tmp_path / "out", tmp_path / "r.json"
    argv = ["prune", "--weights", str(ckpt), "--target-flops-ratio", "0.5", "--layers", "2", "--round-to", "2"]
    assert main(argv + ["--imgsz", "128", "--out", str(out_dir), "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "params" in text and "GFLOPs" in text and "depth" in text and "saved" in text
    dst = out_dir / "tiny_pruned.safetensors"
    model = load_model(dst)
    report = json.loads(js.read_text())
    assert report["after"]["params"] == sum(p.numel() for p in model.parameters())
    assert {"params", "gflops"} <= set(report["before"]) and report["settings"]["round_to"] == 2
    assert 0.98 <= report["target"]["fraction_of_target"] <= 1.0
    assert len(report["removed_bottlenecks"]) == 2
    entry = model.meta["history"][-1]
    assert entry["action"] == "prune" and entry["source"] == str(ckpt)
    model.eval()
    model(torch.zeros(1, 3, 64, 64))


def test_prune_to_file(ckpt, tmp_path):
    dst = tmp_path / "x" / "small.safetensors"
    assert main(["prune", "--weights", str(ckpt), "--channel-ratio", "0.3", "--round-to", "1", "--out", str(dst)]) == 0
    assert dst.is_file()
    argv = ["prune", "--weights", str(ckpt), "--channel-ratio", "0.3", "--group-normalize", "mean", "--out", str(dst)]
    assert main(argv) == 0
    assert load_model(dst).meta["history"][-1]["settings"]["group_normalize"] == "mean"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--channel-ratio", "0.3", "--target-gflops", "1"], "conflict"),
        (["--target-flops-ratio", "0.5", "--target-params-ratio", "0.5"], "conflict"),
        ([], "nothing to prune"),
        (["--target-flops-ratio", "0.001", "--round-to", "1"], "minimum reachable"),
        (["--layers", "50"], "only 7 with a shortcut"),
        (["--channel-ratio", "0.3", "--importance", "magic"], "unknown importance"),
    ],
)
def test_bad_options_are_one_error_line(ckpt, tmp_path, capsys, extra, message):
    assert main(["prune", "--weights", str(ckpt), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_bad_out_suffix(ckpt, tmp_path, capsys):
    assert main(["prune", "--weights", str(ckpt), "--channel-ratio", "0.3", "--out", str(tmp_path / "o.pt")]) == 2
    assert ".safetensors file or a folder" in capsys.readouterr().err
