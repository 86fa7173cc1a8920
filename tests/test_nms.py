import numpy as np
import pytest
import torch

from pruned_yolo.inference.nms import batched_nms, non_max_suppression


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def brute_force_nms(boxes, scores, classes, thr):
    """Reference: per class, visit by decreasing score, keep if no kept box overlaps > thr."""
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(classes[k] != classes[i] or _iou(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


def _random_boxes(rng, n, nc):
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(4, 80, (n, 2))
    return np.concatenate([xy, xy + wh], 1), rng.uniform(0, 1, n).astype(np.float32), rng.integers(0, nc, n)


@pytest.mark.parametrize("backend", ["opencv", "numpy"])
@pytest.mark.parametrize("seed", range(5))
def test_batched_nms_matches_brute_force(backend, seed):
    rng = np.random.default_rng(seed)
    boxes, scores, classes = _random_boxes(rng, 300, 4)
    for thr in (0.3, 0.5, 0.7):
        got = batched_nms(boxes, scores, classes, thr, backend).tolist()
        assert got == brute_force_nms(boxes, scores.tolist(), classes.tolist(), thr)


def test_batched_nms_empty():
    assert len(batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5)) == 0


def _prediction(rng, n=200, nc=3):
    xy = rng.uniform(20, 180, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    obj = rng.uniform(0, 1, (n, 1))
    cls = rng.uniform(0, 1, (n, nc))
    return torch.tensor(np.concatenate([xy, wh, obj, cls], 1), dtype=torch.float32)[None]


def test_non_max_suppression_against_brute_force_single_label():
    rng = np.random.default_rng(1)
    pred = _prediction(rng)
    out = non_max_suppression(pred, conf_thres=0.2, iou_thres=0.45)[0].numpy()
    p = pred[0].numpy()
    conf = p[:, 5:] * p[:, 4:5]
    cls, best = conf.argmax(1), conf.max(1)
    sel = (p[:, 4] > 0.2) & (best > 0.2)
    boxes = np.concatenate([p[:, :2] - p[:, 2:4] / 2, p[:, :2] + p[:, 2:4] / 2], 1)[sel]
    keep = brute_force_nms(boxes, best[sel].tolist(), cls[sel].tolist(), 0.45)
    expected = np.concatenate([boxes[keep], best[sel][keep, None], cls[sel][keep, None]], 1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


def test_multi_label_keeps_a_box_once_per_class():
    # one box, two classes above threshold: two detections with the same coordinates
    pred = torch.tensor([[[50, 50, 20, 20, 0.9, 0.8, 0.7, 0.01]]])
    out = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.5, multi_label=True)[0]
    assert out.shape == (2, 6)
    assert sorted(out[:, 5].tolist()) == [0.0, 1.0]
    single = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.5)[0]
    assert single.shape == (1, 6) and single[0, 5] == 0


def test_filters_max_det_classes_and_agnostic():
    rng = np.random.default_rng(2)
    pred = _prediction(rng, n=500)
    out = non_max_suppression(pred, conf_thres=0.01, iou_thres=0.9, max_det=7)[0]
    assert len(out) == 7 and torch.all(out[:-1, 4] >= out[1:, 4])
    only1 = non_max_suppression(pred, conf_thres=0.01, iou_thres=0.5, classes=[1])[0]
    assert len(only1) and torch.all(only1[:, 5] == 1)
    agn = non_max_suppression(pred, 0.01, 0.5, agnostic=True)[0].numpy()
    ious = [_iou(a, b) for i, a in enumerate(agn) for b in agn[i + 1 :]]
    assert max(ious) <= 0.5 + 1e-6


def test_bad_thresholds_raise():
    with pytest.raises(ValueError):
        non_max_suppression(torch.zeros(1, 1, 8), conf_thres=1.5)
