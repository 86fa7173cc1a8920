"""Bad data and bad data/model combinations: one clear error line, or skipped and named.

Every test here failed before the matching fix (the reliability issue's data/evaluation items).
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from pruned_yolo import build_model, save_checkpoint
from pruned_yolo.cli.main import main
from pruned_yolo.data.config import load_data_config
from pruned_yolo.data.dataset import TrainDataset
from pruned_yolo.data.index import check_image, index_images
from pruned_yolo.data.labels import parse_label_file
from pruned_yolo.data.val_dataset import ValDataset
from pruned_yolo.errors import DataError
from pruned_yolo.evaluation.validator import Validator
from pruned_yolo.inference import nms as nms_module
from pruned_yolo.inference.nms import batched_nms, non_max_suppression
from pruned_yolo.training import TrainConfig, Trainer

from .conftest import make_dataset, tiny_cfg


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNED_YOLO_CACHE", str(tmp_path / "cache"))


def _tiny(nc: int = 3):
    torch.manual_seed(0)
    return build_model(tiny_cfg(nc))


def _cli_error(argv: list[str], capsys) -> str:
    """Run the CLI, expect exit code 2 and exactly one `error:` line on stderr; return it."""
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def _jpeg(h=64, w=96, seed=0, **pil) -> bytes:
    """A small JPEG (OpenCV, or PIL with options such as progressive=True)."""
    rng = np.random.default_rng(seed)
    im = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (5, 5), 1)
    if not pil:
        return cv2.imencode(".jpg", im)[1].tobytes()
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="JPEG", **pil)
    return buf.getvalue()


# ------------------------------------------------------------------ 1. no usable validation images
def _break_val_images(data: Path) -> None:
    for p in (data.parent / "images" / "val").iterdir():
        p.write_bytes(b"this is not an image")


def test_val_with_only_unreadable_images_is_an_error(tmp_path, capsys):
    data = make_dataset(tmp_path / "ds")
    _break_val_images(data)
    with pytest.raises(DataError, match="no usable val images"):
        Validator(data, imgsz=64)
    ckpt = save_checkpoint(_tiny(), tmp_path / "tiny.safetensors")
    line = _cli_error(["val", "--weights", str(ckpt), "--data", str(data), "--imgsz", "64", "--workers", "0"], capsys)
    assert str(data) in line and "no usable val images" in line


def test_train_with_an_all_bad_val_split_stops_before_training(tmp_path):
    data = make_dataset(tmp_path / "ds")
    _break_val_images(data)
    cfg = TrainConfig(
        data=str(data), cfg=tiny_cfg(), epochs=1, imgsz=64, batch=2, nbs=2, project=str(tmp_path / "runs"),
        workers=0, threads=1, progress=False,
    )  # fmt: skip
    with pytest.raises(DataError, match="no usable val images"):
        Trainer(cfg).fit()


# ------------------------------------------------------------------ 2. no labels
def test_val_without_labels_is_an_error(tmp_path, capsys):
    data = make_dataset(tmp_path / "ds")
    for p in (data.parent / "labels" / "val").iterdir():
        p.unlink()
    (data.parent / "labels" / "val").rmdir()
    with pytest.raises(DataError, match="no labels found"):
        Validator(data, imgsz=64)
    ckpt = save_checkpoint(_tiny(), tmp_path / "tiny.safetensors")
    for evaluator in ("pycocotools", "fast"):
        argv = ["val", "--weights", str(ckpt), "--data", str(data), "--imgsz", "64", "--evaluator", evaluator]
        line = _cli_error(argv, capsys)
        assert "no labels found" in line and str(data) in line


def test_val_with_only_empty_label_files_is_an_error(tmp_path):
    data = make_dataset(tmp_path / "ds")
    for p in (data.parent / "labels" / "val").iterdir():
        p.write_text("")
    with pytest.raises(DataError, match="no objects"):
        Validator(data, imgsz=64)


# ------------------------------------------------------------------ 3. model classes vs data classes
def test_class_count_mismatch_between_model_and_data_is_an_error(tmp_path, capsys):
    data = make_dataset(tmp_path / "ds", nc=3)
    validator = Validator(data, imgsz=64, workers=0)
    with pytest.raises(DataError, match=r"80 classes.*3"):
        validator(_tiny(80), progress=False)
    ckpt = save_checkpoint(_tiny(80), tmp_path / "coco80.safetensors")
    line = _cli_error(
        ["val", "--weights", str(ckpt), "--data", str(data), "--imgsz", "64", "--per-class", "--workers", "0"], capsys
    )
    assert "80 classes" in line and str(data) in line


def test_class_name_mismatch_only_warns(tmp_path, caplog):
    data = make_dataset(tmp_path / "ds", nc=3)
    model = _tiny(3)
    model.names = ["cat", "dog", "bird"]
    validator = Validator(data, imgsz=64, workers=0)
    with caplog.at_level(logging.WARNING, logger="pruned_yolo"):
        metrics = validator(model, progress=False, official=False)
    assert metrics["images"] == 2
    warnings = [r.getMessage() for r in caplog.records if "names" in r.getMessage()]
    assert len(warnings) == 1 and "cat" in warnings[0] and "class0" in warnings[0]
    model.names = list(load_data_config(data).names)  # what training sets: no warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pruned_yolo"):
        validator(model, progress=False, official=False)
    assert not [r for r in caplog.records if "names" in r.getMessage()]


# ------------------------------------------------------------------ 4. truncated JPEG ending in FFD9
def _cut_with_eoi(data: bytes) -> bytes:
    return data[: len(data) // 2] + b"\xff\xd9"


@pytest.mark.parametrize("kind", ["baseline", "progressive", "gray"])
def test_jpeg_cut_in_half_with_end_marker_is_corrupt(tmp_path, kind, capfd):
    if kind == "baseline":
        good = _jpeg()
    elif kind == "progressive":
        good = _jpeg(seed=1, progressive=True, quality=90)
    else:
        good = cv2.imencode(".jpg", np.random.default_rng(2).integers(0, 255, (64, 96), dtype=np.uint8))[1].tobytes()
    (tmp_path / "good.jpg").write_bytes(good)
    (tmp_path / "cut.jpg").write_bytes(_cut_with_eoi(good))
    assert check_image(tmp_path / "good.jpg") is None
    reason = check_image(tmp_path / "cut.jpg")
    assert reason is not None and "corrupt" in reason
    assert "Corrupt JPEG" not in capfd.readouterr().err  # libjpeg's own message is not printed, unnamed


def test_truncated_jpeg_is_skipped_by_name_and_never_read(tmp_path, caplog, capfd):
    data = make_dataset(tmp_path / "ds", n_train=4)
    cut = data.parent / "images" / "train" / "cut.jpg"
    cut.write_bytes(_cut_with_eoi(_jpeg(seed=5)))
    (data.parent / "labels" / "train" / "cut.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    cfg = load_data_config(data)
    with caplog.at_level(logging.WARNING, logger="pruned_yolo"):
        index = index_images(cfg.images("train"), cfg.nc)
    assert cut not in index.images and len(index) == 4
    messages = [r.getMessage() for r in caplog.records]
    assert sum(str(cut) in m for m in messages) == 1
    assert index.summary() == "1 corrupt image skipped"
    ds = TrainDataset(index, imgsz=64)
    for i in range(len(ds)):
        ds[i]
    assert "Corrupt JPEG" not in capfd.readouterr().err


def test_other_threads_stderr_output_is_not_swallowed(tmp_path, capfd):
    (tmp_path / "cut.jpg").write_bytes(_cut_with_eoi(_jpeg()))
    stop, written = threading.Event(), []

    def chatter():  # another thread printing while the decoder's stderr is captured
        while not stop.is_set():
            os.write(2, b"chatter\n")
            written.append(1)
            time.sleep(0.0002)

    t = threading.Thread(target=chatter)
    t.start()
    try:
        for _ in range(30):
            assert check_image(tmp_path / "cut.jpg") is not None
    finally:
        stop.set()
        t.join()
    err = capfd.readouterr().err
    assert "Corrupt JPEG" not in err
    assert err.splitlines().count("chatter") == len(written) > 0  # every line passed on, whole


# ------------------------------------------------------------------ 5. non-finite label values
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_non_finite_label_values_are_bad_lines(tmp_path, value):
    lab = tmp_path / "a.txt"
    lab.write_text(f"0 0.5 0.5 0.2 0.2\n{value} 0.5 0.5 0.2 0.2\n1 0.5 {value} 0.2 0.2\n")
    rows, problems = parse_label_file(lab, nc=3)
    assert np.allclose(rows, [[0, 0.5, 0.5, 0.2, 0.2]])
    assert len(problems) == 2 and all("not a finite number" in p and str(lab) in p for p in problems)
    assert problems[0].startswith(f"{lab}:2") and problems[1].startswith(f"{lab}:3")


def test_non_finite_labels_do_not_stop_train_or_val(tmp_path):
    data = make_dataset(tmp_path / "ds")
    for split in ("train", "val"):
        with (data.parent / "labels" / split / f"{split}0.txt").open("a") as f:
            f.write("nan 0.5 0.5 0.2 0.2\n0 inf 0.5 0.2 0.2\n")
    cfg = load_data_config(data)
    index = index_images(cfg.images("train"), cfg.nc, warn=False)
    assert index.summary() == "2 bad label lines skipped"
    metrics = Validator(data, imgsz=64, workers=0)(_tiny(), progress=False, official=False)
    assert metrics["images"] == 2


# ------------------------------------------------------------------ 6. image deleted during training
def test_image_deleted_during_training_is_skipped_and_named_once(tmp_path, caplog):
    data = make_dataset(tmp_path / "ds", n_train=4, size=64)
    cfg = load_data_config(data)
    index = index_images(cfg.images("train"), cfg.nc, warn=False)
    gone = index.images[1]
    ds = TrainDataset(index, imgsz=64, hyp={"mosaic": 1.0})
    plain = TrainDataset(index, imgsz=64, augment=False)
    gone.unlink()
    with caplog.at_level(logging.WARNING, logger="pruned_yolo"):
        for epoch in range(3):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                im, targets, _ = ds[i]
                assert im.shape == (3, 64, 64)
        im, targets, meta = plain[1]
    assert len(targets) == 0 and meta["path"] == str(gone)  # its labels are not trained on a blank image
    named = [r.getMessage() for r in caplog.records if str(gone) in r.getMessage()]
    assert len(named) == 2, named  # once per dataset object (one per loader process in real runs)


def test_image_deleted_before_validation_is_named_and_counted_as_missed(tmp_path, caplog):
    data = make_dataset(tmp_path / "ds", n_val=3)
    validator = Validator(data, imgsz=64, workers=0)
    gone = validator.dataset.images[0]
    gone.unlink()
    with caplog.at_level(logging.WARNING, logger="pruned_yolo"):
        metrics = validator(_tiny(), progress=False, official=False)
    assert metrics["images"] == 3
    assert sum(str(gone) in r.getMessage() for r in caplog.records) == 1
    ds = ValDataset(validator.index, 64, mode="rect")
    im, _, meta = ds[0]
    assert meta.get("missing") and im.shape[0] == 3


# ------------------------------------------------------------------ 7. truncated label cache
def test_truncated_label_cache_is_rebuilt(tmp_path, caplog):
    data = make_dataset(tmp_path / "ds")
    cfg = load_data_config(data)
    images = cfg.images("train")
    first = index_images(images, cfg.nc, cache=True, warn=False)
    (cache,) = (tmp_path / "cache" / "labels").glob("*.npz")
    raw = cache.read_bytes()
    cache.write_bytes(raw[: len(raw) // 2])
    with caplog.at_level(logging.WARNING, logger="pruned_yolo"):
        second = index_images(images, cfg.nc, cache=True, warn=False)
    assert not second.from_cache and second.images == first.images
    assert any(str(cache) in r.getMessage() and "rebuilt" in r.getMessage() for r in caplog.records)
    assert index_images(images, cfg.nc, cache=True, warn=False).from_cache  # rewritten and valid again
    cache.write_bytes(b"")
    assert not index_images(images, cfg.nc, cache=True, warn=False).from_cache


# ------------------------------------------------------------------ 8. malformed data YAML
@pytest.mark.parametrize(
    "content, message",
    [
        (bytes(np.random.default_rng(0).integers(128, 256, 300, dtype=np.uint8)), "not a UTF-8 text file"),
        (b"path: .\ntrain: images/train\nval: images/val\nnc: three\nnames: [a, b, c]\n", "'nc' must be"),
        (b"path: .\ntrain: images/train\nval: images/val\nnc: [3]\nnames: [a, b, c]\n", "'nc' must be"),
    ],
)
def test_malformed_data_yaml_is_one_error_line(tmp_path, content, message, capsys):
    make_dataset(tmp_path / "ds")
    bad = tmp_path / "ds" / "bad.yaml"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_data_config(bad)
    ckpt = save_checkpoint(_tiny(), tmp_path / "tiny.safetensors")
    line = _cli_error(["val", "--weights", str(ckpt), "--data", str(bad)], capsys)
    assert str(bad) in line and message in line


# ------------------------------------------------------------------ 9. NMS on a flood of candidates
def _flood(n: int = 6000, nc: int = 20, seed: int = 0) -> torch.Tensor:
    """Predictions of an untrained (or freshly pruned) model: every anchor above conf 0.001 in every class."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(1, n, 2, generator=g) * 640
    wh = torch.rand(1, n, 2, generator=g) * 60 + 4
    obj = torch.rand(1, n, 1, generator=g) * 0.2 + 0.05
    cls = torch.rand(1, n, nc, generator=g) * 0.2
    return torch.cat([xy, wh, obj, cls], -1)


def _reference_nms(prediction, conf_thres, iou_thres, max_det, max_nms):
    """The previous implementation: every candidate expanded, fully sorted, then NMS over all of them."""
    x = prediction[0].numpy()
    x = x[x[:, 4] > conf_thres]
    cls_conf = x[:, 5:] * x[:, 4:5]
    box = np.concatenate([x[:, :2] - x[:, 2:4] / 2, x[:, :2] + x[:, 2:4] / 2], 1)
    i, j = np.nonzero(cls_conf > conf_thres)
    det = np.concatenate([box[i], cls_conf[i, j, None], j[:, None].astype(np.float32)], 1)
    if len(det) > max_nms:
        det = det[np.argsort(-det[:, 4], kind="stable")[:max_nms]]
    keep = batched_nms(det[:, :4], det[:, 4], det[:, 5].astype(np.int64), iou_thres, max_det=None)[:max_det]
    return det[keep]


def test_nms_on_a_flood_of_candidates_is_capped_exact_and_fast(monkeypatch):
    pred = _flood()
    max_nms = 12000  # the test's stand-in for 30000 (the reference is quadratic in it)
    t0 = time.perf_counter()
    ref = _reference_nms(pred, 0.001, 0.6, 300, max_nms)
    t_ref = time.perf_counter() - t0
    seen = []
    kernel = nms_module.cv2.dnn.NMSBoxesBatched

    def counting(boxes, *args, **kw):
        seen.append(len(boxes))
        return kernel(boxes, *args, **kw)

    monkeypatch.setattr(nms_module.cv2.dnn, "NMSBoxesBatched", counting)
    t0 = time.perf_counter()
    (out,) = non_max_suppression(pred, 0.001, 0.6, multi_label=True, max_det=300, max_nms=max_nms)
    t_new = time.perf_counter() - t0
    print(f"\nNMS of 120000 candidates (cap {max_nms}): {t_ref:.3f} s before, {t_new:.3f} s after")
    assert out.shape == (300, 6)
    np.testing.assert_array_equal(out.numpy(), ref)  # same boxes, same order
    assert sum(seen) <= 4 * 300 * 4  # the kernel saw a few top-scoring prefixes, not 12000 boxes
    assert t_new < t_ref / 3


@pytest.mark.parametrize("multi_label", [True, False])
@pytest.mark.parametrize("backend", ["opencv", "numpy"])
def test_capped_nms_equals_full_nms_when_few_boxes_survive(multi_label, backend):
    # a few objects with many near duplicates: NMS removes most candidates, the prefix search must widen
    rng = np.random.default_rng(1)
    centres = rng.uniform(50, 590, (6, 2))
    n = 3000
    k = rng.integers(0, 6, n)
    xy = centres[k] + rng.normal(0, 2, (n, 2))
    wh = np.full((n, 2), 80.0) + rng.normal(0, 2, (n, 2))
    obj = rng.uniform(0.01, 1, (n, 1))
    cls = rng.uniform(0, 1, (n, 4))
    pred = torch.from_numpy(np.concatenate([xy, wh, obj, cls], 1)[None].astype(np.float32))
    for max_det in (5, 40, 300):
        (out,) = non_max_suppression(pred, 0.001, 0.5, multi_label=multi_label, max_det=max_det, backend=backend)
        (full,) = non_max_suppression(
            pred, 0.001, 0.5, multi_label=multi_label, max_det=10**9, backend=backend
        )  # no early stop possible
        np.testing.assert_array_equal(out.numpy(), full.numpy()[:max_det])
