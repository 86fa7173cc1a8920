"""Augmentations: boxes follow every transform (checked against coloured pixels), degenerate
boxes are dropped, and every random draw comes from the generator passed in."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pruned_yolo.data import augment as A
from pruned_yolo.data.dataset import TrainDataset
from pruned_yolo.data.index import index_images

# one pure colour per class (BGR); the background is a neutral gray
COLORS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0)]
NC = len(COLORS)
BG = 128


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNED_YOLO_CACHE", str(tmp_path / "cache"))


def make_colour_dataset(root: Path, n: int = 6, margin: int = 0, seed: int = 0) -> list[Path]:
    """PNG images (128x128, 128x96, 96x128) with non-overlapping filled rectangles, one colour per class.

    Rectangles lie in the cells of a 2x3 grid, at least `margin` pixels from the image border.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    sizes = [(128, 128), (96, 128), (128, 96)]
    paths = []
    for k in range(n):
        h, w = sizes[k % 3]
        im = np.full((h, w, 3), BG, dtype=np.uint8)
        lines = []
        classes = rng.permutation(NC)[: rng.integers(3, NC + 1)]
        cells = rng.permutation(6)
        ch, cw = (h - 2 * margin) // 2, (w - 2 * margin) // 3
        for c, cell in zip(classes, cells):
            gy, gx = divmod(int(cell), 3)
            bh, bw = rng.integers(ch // 2, ch - 2), rng.integers(cw // 2, cw - 2)
            y1 = margin + gy * ch + rng.integers(1, ch - bh)
            x1 = margin + gx * cw + rng.integers(1, cw - bw)
            im[y1 : y1 + bh, x1 : x1 + bw] = COLORS[c]
            lines.append(f"{c} {(x1 + bw / 2) / w:.6f} {(y1 + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
        p = root / "images" / f"im{k}.png"
        cv2.imwrite(str(p), im)
        (root / "labels" / f"im{k}.txt").write_text("\n".join(lines) + "\n")
        paths.append(p)
    return paths


def colour_masks(im_bgr: np.ndarray, tol: int = 40) -> list[np.ndarray]:
    im = im_bgr.astype(np.int16)
    return [(np.abs(im - np.array(c, dtype=np.int16)).max(-1) < tol) for c in COLORS]


def item_to_bgr(item) -> tuple[np.ndarray, np.ndarray]:
    """(CHW RGB tensor, targets) -> (HWC BGR image, (n, 5) [class, x1, y1, x2, y2] pixels)."""
    im, t, _ = item
    bgr = np.ascontiguousarray(im.numpy().transpose(1, 2, 0)[..., ::-1])
    h, w = bgr.shape[:2]
    t = t.numpy()
    boxes = np.stack(
        (t[:, 1], (t[:, 2] - t[:, 4] / 2) * w, (t[:, 3] - t[:, 5] / 2) * h,
         (t[:, 2] + t[:, 4] / 2) * w, (t[:, 3] + t[:, 5] / 2) * h), 1
    )  # fmt: skip
    return bgr, boxes


def check_boxes(im: np.ndarray, labels: np.ndarray, min_fill: float, pad: float = 2.0) -> float:
    """Every box holds >= min_fill of its class colour; returns the fraction of coloured
    pixels outside all (padded) boxes of their class."""
    masks = colour_masks(im)
    h, w = im.shape[:2]
    outside = total = 0
    for c, mask in enumerate(masks):
        covered = np.zeros_like(mask)
        for _, x1, y1, x2, y2 in labels[labels[:, 0] == c]:
            assert x2 > x1 and y2 > y1
            xi1, yi1 = int(np.floor(x1 + 1e-3)), int(np.floor(y1 + 1e-3))
            xi2, yi2 = int(np.ceil(x2 - 1e-3)), int(np.ceil(y2 - 1e-3))
            fill = mask[yi1:yi2, xi1:xi2].mean()
            assert fill >= min_fill, f"class {c} box {(x1, y1, x2, y2)} holds {fill:.2f} of its colour"
            p1x, p1y = max(int(np.floor(x1 - pad)), 0), max(int(np.floor(y1 - pad)), 0)
            covered[p1y : min(int(np.ceil(y2 + pad)), h), p1x : min(int(np.ceil(x2 + pad)), w)] = True
        total += int(mask.sum())
        outside += int((mask & ~covered).sum())
    return outside / max(total, 1)


def _index(paths):
    return index_images(paths, NC, warn=False)


NO_COLOUR_CHANGE = {"hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "mixup": 0.0}


def test_letterbox_boxes_enclose_exactly_their_pixels(tmp_path):
    ds = TrainDataset(_index(make_colour_dataset(tmp_path)), imgsz=160, augment=False)
    for i in range(len(ds)):
        im, labels = item_to_bgr(ds[i])
        assert im.shape == (160, 160, 3)
        assert check_boxes(im, labels, min_fill=0.8) == 0.0


def test_affine_without_loss_keeps_every_box_around_its_pixels(tmp_path):
    """Rotation, shear, perspective and flips with nothing pushed out of the image: every box
    survives and encloses all of its coloured pixels."""
    hyp = {**NO_COLOUR_CHANGE, "mosaic": 0.0, "degrees": 15, "shear": 5, "perspective": 0.001,
           "translate": 0.0, "scale": 0.0, "fliplr": 0.5, "flipud": 0.5}  # fmt: skip
    paths = make_colour_dataset(tmp_path, margin=24)
    ds = TrainDataset(_index(paths), imgsz=128, hyp=hyp)
    flips = 0
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            im, labels = item_to_bgr(ds[i])
            assert len(labels) == len(ds.labels[i])  # nothing dropped
            assert check_boxes(im, labels, min_fill=0.4) == 0.0
            flips += 1
    assert flips == 24


def test_mosaic_canvas_labels_match_the_pixels_exactly(tmp_path):
    paths = make_colour_dataset(tmp_path)
    ds = TrainDataset(_index(paths), imgsz=128, augment=False)
    rng = np.random.default_rng(0)
    for _ in range(8):
        idx = rng.integers(0, len(ds), 4)
        center = rng.uniform(64, 192, 2)
        canvas, labels = A.mosaic_canvas([ds.load_image(j) for j in idx], [ds.labels[j] for j in idx], 128, center)
        assert canvas.shape == (256, 256, 3)
        visible = labels[(labels[:, 3] - labels[:, 1] > 0) & (labels[:, 4] - labels[:, 2] > 0)]
        assert check_boxes(canvas, visible, min_fill=0.9, pad=0.5) == 0.0
        for c, x1, y1, x2, y2 in visible:
            ys, xs = np.nonzero(colour_masks(canvas)[int(c)][int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))])
            assert abs(xs.min() + int(x1) - x1) <= 1 and abs(xs.max() + 1 + int(x1) - x2) <= 1
            assert abs(ys.min() + int(y1) - y1) <= 1 and abs(ys.max() + 1 + int(y1) - y2) <= 1


def test_full_pipeline_boxes_follow_mosaic_affine_and_flips(tmp_path):
    hyp = {**NO_COLOUR_CHANGE, "mosaic": 1.0, "degrees": 10, "shear": 3, "perspective": 0.0002,
           "translate": 0.1, "scale": 0.5, "fliplr": 0.5, "flipud": 0.5}  # fmt: skip
    ds = TrainDataset(_index(make_colour_dataset(tmp_path)), imgsz=128, hyp=hyp)
    outside = []
    n_boxes = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            im, labels = item_to_bgr(ds[i])
            assert im.shape == (128, 128, 3)
            assert ((labels[:, 3] - labels[:, 1]) > 2 - 1e-3).all() and ((labels[:, 4] - labels[:, 2]) > 2 - 1e-3).all()
            # slivers of boxes dropped for keeping < 10% of their area may lie outside every box
            outside.append(check_boxes(im, labels, min_fill=0.25))
            n_boxes += len(labels)
    assert n_boxes > 50
    assert max(outside) < 0.1 and np.mean(outside) < 0.03, outside


def test_random_affine_drops_degenerate_boxes():
    im = np.zeros((200, 200, 3), dtype=np.uint8)
    labels = np.array(
        [
            [0, 0, 0, 40, 40],  # ends up entirely outside the output
            [1, 45, 45, 60, 60],  # partly outside, 44% left: kept, clipped
            [2, 48, 48, 52, 52],  # 2 x 2 pixels left: dropped
            [3, 90, 90, 110, 110],  # inside
            [4, 100, 20, 190, 52],  # a strip 2 pixels high left (y 50..52 -> 0..2): dropped
        ],
        dtype=np.float32,
    )
    rng = np.random.default_rng(0)  # no randomness left: degrees, scale, shear, translate all 0
    out, kept = A.random_affine(im, labels, rng, (100, 100), degrees=0, translate=0, scale=0, shear=0)
    assert out.shape == (100, 100, 3)
    assert kept[:, 0].tolist() == [1, 3]
    assert np.allclose(kept[0, 1:], [0, 0, 10, 10]) and np.allclose(kept[1, 1:], [40, 40, 60, 60])


def test_box_candidates_and_drop_degenerate():
    before = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 100, 10]], dtype=np.float32).T
    after = np.array([[0, 0, 10, 10], [0, 0, 2, 10], [0, 0, 3, 3], [0, 0, 100, 0.5]], dtype=np.float32).T
    assert A.box_candidates(before, after).tolist() == [True, False, False, False]
    labels = np.array([[0, -5, -5, 20, 20], [1, 30, 30, 31, 50], [2, 95, 10, 120, 20]], dtype=np.float32)
    out = A.drop_degenerate(labels, 100, 100)
    assert out[:, 0].tolist() == [0, 2] and out[0, 1:].tolist() == [0, 0, 20, 20] and out[1, 3] == 100


def test_transform_boxes_encloses_warped_corners():
    rng = np.random.default_rng(1)
    M, _ = A.affine_matrix(rng, (100, 120), (100, 100), degrees=30, shear=10, perspective=0.001)
    boxes = np.array([[10, 20, 50, 60], [0, 0, 120, 100]], dtype=np.float32)
    out = A.transform_boxes(boxes, M, perspective=True)
    for b, o in zip(boxes, out):
        corners = np.array([[[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]]], dtype=np.float64)
        warped = cv2.perspectiveTransform(corners, M)[0]
        assert np.allclose(o, [*warped.min(0), *warped.max(0)], atol=1e-3)
    assert A.transform_boxes(np.zeros((0, 4)), M, True).shape == (0, 4)


def test_flips_move_boxes_with_the_pixels():
    im = np.zeros((50, 80, 3), dtype=np.uint8)
    im[5:15, 10:30] = 255
    labels = np.array([[0, 10, 5, 30, 15]], dtype=np.float32)
    lr, llr = A.flip_lr(im, labels)
    assert llr[0, 1:].tolist() == [50, 5, 70, 15] and lr[5:15, 50:70].min() == 255 and lr.sum() == im.sum()
    ud, lud = A.flip_ud(im, labels)
    assert lud[0, 1:].tolist() == [10, 35, 30, 45] and ud[35:45, 10:30].min() == 255


def test_hsv_and_mixup():
    rng = np.random.default_rng(0)
    im = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    same = A.augment_hsv(im.copy(), np.random.default_rng(1), 0, 0, 0)
    assert np.array_equal(same, im)
    a = A.augment_hsv(im.copy(), np.random.default_rng(1), 0.015, 0.7, 0.4)
    b = A.augment_hsv(im.copy(), np.random.default_rng(1), 0.015, 0.7, 0.4)
    assert np.array_equal(a, b) and not np.array_equal(a, im) and a.dtype == np.uint8
    im2 = np.zeros_like(im)
    la, lb = np.ones((2, 5), np.float32), np.zeros((3, 5), np.float32)
    mixed, labels = A.mixup(im, la, im2, lb, np.random.default_rng(0))
    assert labels.shape == (5, 5)
    r = mixed.astype(float).sum() / im.astype(float).sum()
    assert 0.3 < r < 0.7  # Beta(32, 32) blend ratio


def test_mixup_items_carry_the_labels_of_both_mosaics(tmp_path):
    paths = make_colour_dataset(tmp_path)
    base = {**NO_COLOUR_CHANGE, "fliplr": 0.0, "scale": 0.0, "translate": 0.0}
    plain = TrainDataset(_index(paths), imgsz=128, hyp=base)
    mixed = TrainDataset(_index(paths), imgsz=128, hyp={**base, "mixup": 1.0})
    more = sum(len(mixed[i][1]) > len(plain[i][1]) for i in range(len(plain)))
    assert more >= len(plain) // 2
    for i in range(len(plain)):  # the first mosaic is drawn the same way: its boxes come first
        a, b = plain[i][1], mixed[i][1]
        assert torch.equal(b[: len(a)], a)
