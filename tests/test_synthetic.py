import json

import numpy as np

from pruned_yolo.data.config import load_data_config
from pruned_yolo.data.index import index_images
from pruned_yolo.data.synthetic import CLASSES, draw_shape, make_synthetic_dataset


def test_dataset_layout_labels_and_determinism(tmp_path):
    data = make_synthetic_dataset(tmp_path / "a", n_train=6, n_val=3, size=96, nc=3, seed=1)
    cfg = load_data_config(data)
    assert cfg.names == CLASSES[:3]
    for split, n in (("train", 6), ("val", 3)):
        index = index_images(cfg.images(split), cfg.nc, warn=False)
        assert len(index) == n and not index.problems
        assert all(len(lb) >= 1 for lb in index.labels)
        for lb in index.labels:
            assert ((lb[:, 1:] > 0) & (lb[:, 1:] <= 1)).all() and set(lb[:, 0].astype(int)) <= {0, 1, 2}
    # same seed -> same bytes; other seed -> other images
    again = make_synthetic_dataset(tmp_path / "b", n_train=6, n_val=3, size=96, nc=3, seed=1)
    other = make_synthetic_dataset(tmp_path / "c", n_train=6, n_val=3, size=96, nc=3, seed=2)
    f = "images/train/train_00003.jpg"
    assert (data.parent / f).read_bytes() == (again.parent / f).read_bytes()
    assert (data.parent / f).read_bytes() != (other.parent / f).read_bytes()
    # a second call with the same spec reuses the files, a different spec rewrites them
    stamp = (data.parent / f).stat().st_mtime_ns
    make_synthetic_dataset(tmp_path / "a", n_train=6, n_val=3, size=96, nc=3, seed=1)
    assert (data.parent / f).stat().st_mtime_ns == stamp
    make_synthetic_dataset(tmp_path / "a", n_train=4, n_val=2, size=96, nc=3, seed=1)
    assert len(list((data.parent / "images" / "train").glob("*.jpg"))) == 4
    assert json.loads((data.parent / "synthetic.json").read_text())["n_train"] == 4


def test_boxes_are_tight():
    for cls in range(len(CLASSES)):
        im = np.zeros((100, 100, 3), np.uint8)
        x1, y1, x2, y2 = draw_shape(im, cls, 50.0, 50.0, 20.0, 0.3, (255, 255, 255))
        ys, xs = np.nonzero(im[..., 0] > 127)
        assert abs(xs.min() - x1) <= 1.5 and abs(xs.max() + 1 - x2) <= 1.5, cls
        assert abs(ys.min() - y1) <= 1.5 and abs(ys.max() + 1 - y2) <= 1.5, cls
