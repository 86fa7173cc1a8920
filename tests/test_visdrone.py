"""VisDrone-DET -> YOLO conversion: the shared sample and synthetic edge cases."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from pruned_yolo.cli.main import main
from pruned_yolo.data.config import label_path, load_data_config
from pruned_yolo.data.index import index_images
from pruned_yolo.data.visdrone import VISDRONE_NAMES, convert_visdrone, convert_visdrone_split, parse_visdrone_line
from pruned_yolo.errors import DataError

from .conftest import SHARED

SAMPLE = SHARED / "datasets" / "visdrone_sample"
needs_sample = pytest.mark.skipif(not (SAMPLE / "annotations").is_dir(), reason="../shared VisDrone sample not present")


def _yolo(path: Path) -> np.ndarray:
    return np.loadtxt(path, ndmin=2).reshape(-1, 5)


@needs_sample
def test_sample_converts_with_native_numbers(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="pruned_yolo"):
        yaml_path = convert_visdrone(SAMPLE, tmp_path / "vd")
    cfg = load_data_config(yaml_path)
    assert cfg.names == VISDRONE_NAMES and cfg.nc == 10
    assert cfg.train == cfg.val  # a single split is both train and val
    images = cfg.images("train")
    assert len(images) == 3
    kept = dropped0 = 0
    for img in images:
        native = [r.split(",") for r in (SAMPLE / "annotations" / f"{img.stem}.txt").read_text().split()]
        rows = np.array([[float(v) for v in r[:8]] for r in native])
        labels = _yolo(label_path(img))
        h, w = cv2.imread(str(img)).shape[:2]
        assert (w, h) == (455, 256)
        keep = (rows[:, 5] >= 1) & (rows[:, 5] <= 10) & (rows[:, 4] != 0)
        dropped0 += int((rows[:, 5] == 0).sum())
        # first rows, by hand: class = category - 1, centre and size normalised
        for r, lb in zip(rows[keep][:3], labels[:3]):
            left, top, bw, bh, _, cat = r[:6]
            expect = [cat - 1, (left + bw / 2) / w, (top + bh / 2) / h, bw / w, bh / h]
            assert np.allclose(lb, expect, atol=1e-5), (r, lb)
        unique = {tuple(x) for x in rows[keep][:, [0, 1, 2, 3, 5]].tolist()}
        assert len(labels) == len(unique)  # exact repeats of a box are written once
        kept += len(labels)
    assert (kept, dropped0) == (251, 4)
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "3 images, 251 boxes kept" in log and "4 ignored regions (category 0)" in log and "1 duplicate" in log
    # the result is clean input for training
    index = index_images(images, cfg.nc, warn=False)
    assert len(index) == 3 and index.summary() == ""


def _image(folder: Path, name: str, h: int = 80, w: int = 100) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    cv2.imwrite(str(p), np.full((h, w, 3), 90, dtype=np.uint8))
    return p


def test_rules_on_synthetic_rows(tmp_path):
    src = tmp_path / "src"
    _image(src / "images", "a.jpg")  # 100 x 80
    _image(src / "images", "noann.jpg")
    (src / "annotations").mkdir()
    (src / "annotations" / "a.txt").write_text(
        "\n".join(
            [
                "10,20,30,40,1,4,0,0",  # kept: car
                "0,0,50,50,0,0,0,0",  # ignored region
                "5,5,10,10,1,11,0,0",  # others
                "5,5,10,10,0,1,0,0",  # score 0
                "90,70,20,20,1,1,0,0",  # clipped to the image: 90..100, 70..80
                "-5,-10,15,20,1,10,1,2,",  # clipped at the origin (trailing comma): 0..10, 0..10
                "120,10,10,10,1,2,0,0",  # entirely outside
                "1,2,3",  # malformed
                "10,20,30,40,1,4,0,1",  # the first box again (other occlusion flag)
                "1,1,1,1,1,12,0,0",  # unknown category
                "",
            ]
        )
    )
    stats = convert_visdrone_split(src / "images", src / "annotations", tmp_path / "out" / "images",
                                   tmp_path / "out" / "labels")  # fmt: skip
    assert stats["images"] == 2 and stats["boxes"] == 3 and stats["images_without_annotations"] == 1
    for reason in ("ignored", "others", "score0", "empty", "malformed", "duplicate", "unknown"):
        assert stats[reason] == 1, reason
    labels = _yolo(tmp_path / "out" / "labels" / "a.txt")
    assert np.allclose(labels[0], [3, 25 / 100, 40 / 80, 30 / 100, 40 / 80], atol=1e-6)
    assert np.allclose(labels[1], [0, 95 / 100, 75 / 80, 10 / 100, 10 / 80], atol=1e-6)
    assert np.allclose(labels[2], [9, 5 / 100, 5 / 80, 10 / 100, 10 / 80], atol=1e-6)
    assert (tmp_path / "out" / "labels" / "noann.txt").read_text() == ""
    assert (tmp_path / "out" / "images" / "a.jpg").read_bytes() == (src / "images" / "a.jpg").read_bytes()


def test_parse_line_uses_category_before_score():
    assert parse_visdrone_line("1,1,5,5,0,0,0,0", 10, 10) == (None, "ignored")
    row, reason = parse_visdrone_line("0,0,10,5,1,1,0,0", 10, 10)
    assert reason == "kept" and row == (0, 0.5, 0.25, 1.0, 0.5)


def test_official_split_layout_and_symlinks(tmp_path, capsys):
    src = tmp_path / "VisDrone"
    for split, n in (("train", 2), ("val", 1)):
        d = src / f"VisDrone2019-DET-{split}"
        for k in range(n):
            _image(d / "images", f"{split}{k}.jpg")
        (d / "annotations").mkdir()
        for k in range(n):
            (d / "annotations" / f"{split}{k}.txt").write_text("10,10,20,20,1,4,0,0\n")
    (src / "VisDrone2019-DET-test-challenge" / "images").mkdir(parents=True)  # no annotations: ignored
    dst = tmp_path / "yolo"
    assert main(["convert", "visdrone", str(src), str(dst), "--symlink"]) == 0
    assert "data.yaml" in capsys.readouterr().out
    cfg = load_data_config(dst / "data.yaml")
    assert [p.name for p in cfg.images("train")] == ["train0.jpg", "train1.jpg"]
    assert [p.name for p in cfg.images("val")] == ["val0.jpg"]
    assert (dst / "images" / "train" / "train0.jpg").is_symlink()
    assert _yolo(dst / "labels" / "val" / "val0.txt").tolist() == [[3, 0.2, 0.25, 0.2, 0.25]]
    # converting again over the same output works (files are replaced)
    assert main(["convert", "visdrone", str(src), str(dst)]) == 0
    assert not (dst / "images" / "train" / "train0.jpg").is_symlink()


def test_bad_source_is_one_error_line(tmp_path, capsys):
    assert main(["convert", "visdrone", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["convert", "visdrone", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("error:") for e in err)
    with pytest.raises(DataError, match="not found"):
        convert_visdrone(tmp_path / "missing", tmp_path / "out")
