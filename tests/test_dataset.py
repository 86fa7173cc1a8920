"""Training dataset: bad data, label cache, image formats, determinism, RAM cache, loader."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from pruned_yolo.data.config import load_data_config
from pruned_yolo.data.dataset import EpochSampler, TrainDataset, build_train_loader, read_resized
from pruned_yolo.data.index import check_image, index_images, load_or_build_index
from pruned_yolo.utils.boxes import unletterbox_boxes, xywh2xyxy
from pruned_yolo.utils.plotting import plot_batch

from .conftest import make_dataset


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNED_YOLO_CACHE", str(tmp_path / "cache"))


def _jpeg_bytes(h=64, w=96, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    im = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (7, 7), 2)
    return cv2.imencode(".jpg", im)[1].tobytes()


def _png_bytes(h=64, w=96, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    return cv2.imencode(".png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))[1].tobytes()


def corrupt_jpeg(seed=0) -> bytes:
    """A valid JPEG header (up to the scan) followed by random bytes, ending with the EOI marker."""
    jb = _jpeg_bytes(seed=seed)
    sos = jb.find(b"\xff\xda")
    junk = np.random.default_rng(seed).integers(0, 256, len(jb) - sos - 24, dtype=np.uint8).tobytes()
    return jb[: sos + 20] + junk + b"\xff\xd9"


def make_bad_dataset(root: Path, nc: int = 3) -> Path:
    """make_dataset (4 train, 2 val) plus, in train: a corrupt JPEG, a truncated PNG, an empty label
    file, a label with class >= nc, one with a coordinate > 1 and one line with 4 columns.

    Expected: 2 corrupt images and 3 bad label lines skipped; 6 usable train images.
    """
    data = make_dataset(root, nc=nc)
    img, lab = root / "images" / "train", root / "labels" / "train"
    (img / "corrupt.jpg").write_bytes(corrupt_jpeg())
    (lab / "corrupt.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    png = _png_bytes()
    (img / "truncated.png").write_bytes(png[: len(png) // 2])
    (lab / "truncated.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (img / "empty.jpg").write_bytes(_jpeg_bytes(seed=1))
    (lab / "empty.txt").write_text("")
    (img / "badlines.jpg").write_bytes(_jpeg_bytes(seed=2))
    (lab / "badlines.txt").write_text(
        f"1 0.5 0.5 0.3 0.3\n{nc} 0.5 0.5 0.2 0.2\n0 1.2 0.5 0.2 0.2\n2 0.5 0.5 0.2\n0 0.25 0.25 0.1 0.1\n"
    )
    return data


def test_bad_data_is_skipped_and_reported_exactly(tmp_path, caplog):
    data = load_data_config(make_bad_dataset(tmp_path / "bad"))
    with caplog.at_level(logging.WARNING, logger="pruned_yolo"):
        index = index_images(data.images("train"), data.nc)
    assert index.summary() == "2 corrupt images, 3 bad label lines skipped"
    assert len(index) == 6 and len(index.problems) == 5
    names = {Path(p).name for p in index.images}
    assert "corrupt.jpg" not in names and "truncated.png" not in names
    assert len(index.labels[[Path(p).name for p in index.images].index("empty.jpg")]) == 0
    assert index.labels[[Path(p).name for p in index.images].index("badlines.jpg")][:, 0].tolist() == [1, 0]
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count(index.summary()) == 1 and messages[-1] == index.summary()
    assert len(messages) == 6  # one line per problem, then the summary
    for text in ("corrupt.jpg", "truncated.png", "class 3", "normalised", "5 columns"):
        assert sum(text in m for m in messages) == 1, text
    for augment in (True, False):
        ds = TrainDataset(index, imgsz=128, augment=augment)
        for i in range(len(ds)):
            im, t, meta = ds[i]
            assert im.shape == (3, 128, 128) and im.dtype == torch.uint8 and t.shape[1] == 6
    ims, t, metas = next(iter(build_train_loader(ds, batch_size=6, workers=0)))
    assert ims.shape == (6, 3, 128, 128) and len(metas) == 6


@pytest.mark.parametrize(
    "name, make",
    [
        ("garbage_after_header.jpg", corrupt_jpeg),
        ("cut_in_half.jpg", lambda: _jpeg_bytes()[: len(_jpeg_bytes()) // 2]),
        ("header_only.jpg", lambda: _jpeg_bytes()[:200]),
        ("truncated.png", lambda: _png_bytes()[: len(_png_bytes()) // 2]),
        ("no_end_chunk.png", lambda: _png_bytes()[:-12]),
        ("empty.png", lambda: b""),
        ("text.jpg", lambda: b"not an image at all"),
    ],
)
def test_corrupt_images_are_detected(tmp_path, name, make):
    p = tmp_path / name
    p.write_bytes(make())
    assert check_image(p) is not None


def test_good_images_pass_the_check(tmp_path):
    for name, data in (("a.jpg", _jpeg_bytes()), ("b.png", _png_bytes())):
        (tmp_path / name).write_bytes(data)
        assert check_image(tmp_path / name) is None


def test_label_cache_hit_on_second_start(tmp_path, caplog):
    data = load_data_config(make_bad_dataset(tmp_path / "bad"))
    images = data.images("train")
    first = load_or_build_index(images, data.nc)
    assert not first.from_cache
    files = list((tmp_path / "cache" / "labels").glob("*.npz"))
    assert len(files) == 1
    with np.load(files[0], allow_pickle=False) as z:  # no pickled objects inside
        assert z["images"].dtype.kind == "U"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pruned_yolo"):
        second = index_images(images, data.nc, cache=True)
    assert second.from_cache
    assert [str(p) for p in second.images] == [str(p) for p in first.images]
    assert np.array_equal(second.shapes, first.shapes) and second.problems == first.problems
    assert all(np.array_equal(a, b) for a, b in zip(first.labels, second.labels))
    assert second.summary() == first.summary() == "2 corrupt images, 3 bad label lines skipped"
    assert len(caplog.records) == 6  # problems are reported again on a cache hit
    # a changed label file, or another nc, invalidates the cache
    lab = tmp_path / "bad" / "labels" / "train" / "empty.txt"
    lab.write_text("0 0.5 0.5 0.5 0.5\n")
    os.utime(lab, ns=(lab.stat().st_mtime_ns + 10**9,) * 2)
    third = index_images(images, data.nc, cache=True, warn=False)
    assert not third.from_cache
    assert len(third.labels[[p.name for p in third.images].index("empty.jpg")]) == 1
    assert index_images(images, data.nc, cache=True, warn=False).from_cache
    assert not index_images(images, data.nc + 1, cache=True, warn=False).from_cache


def test_unwritable_cache_dir_only_warns(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PRUNED_YOLO_CACHE", str(blocker))  # a file, so no folder can be made there
    data = load_data_config(make_dataset(tmp_path / "ds"))
    with caplog.at_level(logging.WARNING, logger="pruned_yolo"):
        index = index_images(data.images("train"), data.nc, cache=True)
    assert len(index) == 4 and any("label cache not written" in r.getMessage() for r in caplog.records)


def _write_special_images(folder: Path) -> dict[str, tuple[int, int]]:
    """Gray, RGBA, 16-bit and EXIF-rotated images; returns name -> upright (h, w)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "gray.png"), rng.integers(0, 255, (40, 70), dtype=np.uint8))
    cv2.imwrite(str(folder / "gray.jpg"), rng.integers(0, 255, (50, 30), dtype=np.uint8))
    cv2.imwrite(str(folder / "rgba.png"), rng.integers(0, 255, (60, 50, 4), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep16.png"), rng.integers(0, 65535, (30, 80, 3), dtype=np.uint16))
    cv2.imwrite(str(folder / "gray16.png"), rng.integers(0, 65535, (36, 20), dtype=np.uint16))
    # stored 60 x 100 (h x w) with a red top-left corner; EXIF 6 = rotate 90 clockwise to show it
    im = np.full((60, 100, 3), 200, dtype=np.uint8)
    im[:20, :20] = (255, 0, 0)  # RGB red
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(im).save(folder / "exif6.jpg", exif=exif, quality=95)
    return {"gray.png": (40, 70), "gray.jpg": (50, 30), "rgba.png": (60, 50), "deep16.png": (30, 80),
            "gray16.png": (36, 20), "exif6.jpg": (100, 60)}  # fmt: skip


def test_special_images_load_with_correct_shapes(tmp_path):
    expected = _write_special_images(tmp_path / "images")
    index = index_images(sorted((tmp_path / "images").iterdir()), nc=1)
    assert index.summary() == "" and len(index) == len(expected)
    for path, shape in zip(index.images, index.shapes):
        assert tuple(shape) == expected[path.name], path.name
    for augment in (False, True):
        ds = TrainDataset(index, imgsz=64, augment=augment, hyp={"mosaic": 0.5})
        for i in range(len(ds)):
            im, _, meta = ds[i]
            assert im.shape == (3, 64, 64) and im.dtype == torch.uint8
            if not augment:
                h, w = expected[Path(meta["path"]).name]
                assert (h >= w) == (meta["pad"][0] >= meta["pad"][1]), meta  # padding on the short side
    # EXIF orientation: the red corner moves from top-left to top-right (rotated 90 clockwise)
    k = [p.name for p in index.images].index("exif6.jpg")
    ds = TrainDataset(index, imgsz=64, augment=False)
    im = ds.load_image(k)
    assert im.shape[:2] == (64, 39)
    assert im[2, -3, 2] > 200 and im[2, -3, 1] < 60 and im[2, 2, 2] < 230 and im[-3, -3, 2] < 230


def test_exif_is_applied_on_the_reduced_jpeg_path(tmp_path):
    im = np.full((300, 500, 3), 200, dtype=np.uint8)
    im[:100, :100] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(im).save(tmp_path / "big.jpg", exif=exif, quality=95)
    small = read_resized(tmp_path / "big.jpg", (500, 300), 64)  # 500 / 64 >= 4: decoded at 1/4
    assert small.shape == (64, 39, 3)
    assert small[3, -4, 2] > 200 and small[3, -4, 1] < 60 and small[3, 3, 2] < 230


def _dataset(tmp_path, n=6, **kw):
    data = load_data_config(make_dataset(tmp_path / "ds", n_train=n, size=160))
    index = index_images(data.images("train"), data.nc, warn=False)
    return TrainDataset(index, imgsz=kw.pop("imgsz", 128), **kw)


def _equal_items(a, b):
    return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_items_depend_only_on_seed_epoch_and_index(tmp_path):
    hyp = {"degrees": 10, "shear": 3, "perspective": 0.0005, "mixup": 0.5, "flipud": 0.5, "mosaic": 0.7}
    ds = _dataset(tmp_path, hyp=hyp, seed=3)
    items = [ds[i] for i in range(len(ds))]
    assert _equal_items(ds[4], items[4]) and _equal_items(ds[0], items[0])  # order does not matter
    again = _dataset(tmp_path, hyp=hyp, seed=3)
    assert all(_equal_items(again[i], items[i]) for i in reversed(range(len(ds))))
    ds.set_epoch(1)
    assert ds.epoch == 1
    assert not all(torch.equal(ds[i][0], items[i][0]) for i in range(len(ds)))
    ds.set_epoch(0)
    assert all(_equal_items(ds[i], items[i]) for i in range(len(ds)))
    other_seed = _dataset(tmp_path, hyp=hyp, seed=4)
    assert not all(torch.equal(other_seed[i][0], items[i][0]) for i in range(len(ds)))


def test_loader_is_identical_with_0_and_2_workers_across_epochs(tmp_path):
    ds = _dataset(tmp_path, n=6, hyp={"mixup": 0.3})
    batches = {}
    for workers in (0, 2):
        loader = build_train_loader(ds, batch_size=4, workers=workers, seed=1)
        for epoch in (0, 1):  # epoch 1 reaches the persistent workers through shared memory
            ds.set_epoch(epoch)
            batches[workers, epoch] = [(b[0].clone(), b[1].clone(), [m["index"] for m in b[2]]) for b in loader]
        del loader
    for epoch in (0, 1):
        a, b = batches[0, epoch], batches[2, epoch]
        assert len(a) == len(b) == 2
        for (ia, ta, ka), (ib, tb, kb) in zip(a, b):
            assert ka == kb and torch.equal(ia, ib) and torch.equal(ta, tb)
    assert batches[0, 0][0][2] != batches[0, 1][0][2] or not torch.equal(batches[0, 0][0][0], batches[0, 1][0][0])


def test_epoch_sampler_shuffles_by_seed_and_epoch(tmp_path):
    ds = _dataset(tmp_path, n=8)
    s = EpochSampler(ds, seed=5)
    first = list(s)
    assert sorted(first) == list(range(8)) and list(s) == first
    ds.set_epoch(1)
    second = list(s)
    assert sorted(second) == list(range(8)) and second != first
    assert list(EpochSampler(ds, shuffle=False)) == list(range(8))


def test_ram_cache_equals_no_cache(tmp_path):
    for augment in (True, False):
        plain = _dataset(tmp_path, augment=augment, hyp={"mixup": 0.5})
        ram = _dataset(tmp_path, augment=augment, hyp={"mixup": 0.5}, cache="ram")
        assert ram._ram is not None and len(ram._ram) == len(ram)
        for epoch in (0, 1):
            plain.set_epoch(epoch)
            ram.set_epoch(epoch)
            assert all(_equal_items(plain[i], ram[i]) for i in range(len(plain)))


def test_letterboxed_items_map_back_to_the_original_boxes(tmp_path):
    ds = _dataset(tmp_path, augment=False, imgsz=96)
    for i in range(len(ds)):
        im, t, meta = ds[i]
        assert im.shape == (3, 96, 96) and "mosaic" in meta and not meta["mosaic"]
        boxes = xywh2xyxy(t[:, 2:].numpy().astype(np.float64)) * 96
        h0, w0 = meta["shape0"]
        back = unletterbox_boxes(boxes, meta["ratio"], meta["pad"], (h0, w0))
        truth = xywh2xyxy(ds.labels[i][:, 1:].astype(np.float64)) * [w0, h0, w0, h0]
        # one ratio for both axes: the rounded short side is off by at most one resized pixel
        assert np.allclose(back, truth, atol=1.0 / meta["ratio"]), (back, truth)
        assert np.array_equal(t[:, 1].numpy(), ds.labels[i][:, 0])


def test_targets_are_normalised_and_collated_with_slots(tmp_path):
    ds = _dataset(tmp_path, hyp={"degrees": 20, "scale": 0.9, "shear": 5})
    for epoch in range(3):
        ds.set_epoch(epoch)
        ims, targets, metas = next(iter(build_train_loader(ds, batch_size=6, workers=0, shuffle=False)))
        assert ims.shape == (6, 3, 128, 128) and ims.dtype == torch.uint8
        assert targets.dtype == torch.float32 and targets.shape[1] == 6
        assert set(targets[:, 0].long().tolist()) <= set(range(6))
        assert all(m["index"] == k for k, m in enumerate(metas))
        xyxy = xywh2xyxy(targets[:, 2:])
        assert (xyxy >= -1e-6).all() and (xyxy <= 1 + 1e-6).all()
        assert (targets[:, 4:] * 128 > 2 - 1e-4).all()  # no degenerate boxes
        counts = [int((targets[:, 0] == k).sum()) for k in range(6)]
        singles = [len(ds[k][1]) for k in range(6)]
        assert counts == singles


def test_unknown_cache_mode_and_bad_imgsz_are_clear_errors(tmp_path):
    from pruned_yolo.errors import PrunedYoloError

    with pytest.raises(PrunedYoloError, match="cache"):
        _dataset(tmp_path, cache="disk")
    with pytest.raises(PrunedYoloError, match="stride"):
        _dataset(tmp_path, imgsz=100)


def test_plot_batch_writes_a_grid_jpeg(tmp_path):
    ds = _dataset(tmp_path, n=5)
    ims, targets, metas = TrainDataset.collate([ds[i] for i in range(5)])
    out = plot_batch(ims, targets, [f"class{i}" for i in range(3)], tmp_path / "plots" / "batch0.jpg",
                     paths=[m["path"] for m in metas])  # fmt: skip
    im = cv2.imread(str(out))
    assert im is not None and im.shape == (3 * 128, 3 * 128, 3)
    out2 = plot_batch(ims.float() / 255, targets, ["a", "b", "c"], tmp_path / "b.jpg", max_images=2)
    assert cv2.imread(str(out2)).shape == (256, 256, 3)
