import numpy as np
import pytest

from pruned_yolo.evaluation.coco import coco_evaluate, coco_ground_truth, detections_to_coco
from pruned_yolo.evaluation.metrics import compute_ap, match_image


def _score(dets_per_image, labels_per_image, shape=(100, 100)):
    """Fast AP and pycocotools AP for detections (xyxy px) and YOLO labels (normalised)."""
    h, w = shape
    matches, gt_cls = [], []
    for dets, labels in zip(dets_per_image, labels_per_image):
        gt = labels[:, 1:].copy()
        xyxy = np.stack(
            [gt[:, 0] - gt[:, 2] / 2, gt[:, 1] - gt[:, 3] / 2, gt[:, 0] + gt[:, 2] / 2, gt[:, 1] + gt[:, 3] / 2], 1
        ) * [w, h, w, h]
        matches.append(match_image(dets, labels[:, 0], xyxy))
        gt_cls.append(labels[:, 0])
    fast = compute_ap(matches, gt_cls)
    shapes = np.array([shape] * len(labels_per_image))
    gt = coco_ground_truth(shapes, labels_per_image, ["a", "b", "c"])
    results = [r for i, d in enumerate(dets_per_image) for r in detections_to_coco(i, d)]
    return fast, coco_evaluate(gt, results)


def _label(c, x1, y1, x2, y2, w=100, h=100):
    return [c, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]


def test_perfect_detections_score_one():
    labels = [np.array([_label(0, 10, 10, 50, 50), _label(1, 60, 60, 90, 95)], dtype=np.float32)]
    dets = [np.array([[10, 10, 50, 50, 0.9, 0], [60, 60, 90, 95, 0.8, 1]], dtype=np.float32)]
    fast, coco = _score(dets, labels)
    assert fast.map == pytest.approx(1.0) and fast.map50 == pytest.approx(1.0)
    assert coco["mAP50-95"] == pytest.approx(1.0)


def test_false_positive_ranked_first_halves_precision_at_full_recall():
    labels = [np.array([_label(0, 10, 10, 50, 50)], dtype=np.float32)]
    # a confident FP far away, then the TP: precision 0.5 at recall 1 -> AP = 0.5
    dets = [np.array([[60, 60, 90, 90, 0.9, 0], [10, 10, 50, 50, 0.5, 0]], dtype=np.float32)]
    fast, coco = _score(dets, labels)
    assert fast.map50 == pytest.approx(0.5)
    assert coco["mAP50"] == pytest.approx(0.5)


def test_localisation_quality_decides_mAP50_95():
    labels = [np.array([_label(0, 0, 0, 40, 40)], dtype=np.float32)]
    # IoU = 36.8 / 40 = 0.92: TP at thresholds 0.50..0.90 (9 of 10)
    dets = [np.array([[0, 3.2, 40, 40, 0.9, 0]], dtype=np.float32)]
    fast, coco = _score(dets, labels)
    assert fast.map50 == pytest.approx(1.0)
    assert fast.map == pytest.approx(0.9)
    assert coco["mAP50-95"] == pytest.approx(0.9)


def test_duplicate_detection_is_a_false_positive():
    labels = [np.array([_label(0, 10, 10, 50, 50), _label(0, 60, 10, 95, 50)], dtype=np.float32)]
    # duplicate of the first box ranked second, then the second object
    dets = [np.array([[10, 10, 50, 50, 0.9, 0], [11, 11, 50, 50, 0.8, 0], [60, 10, 95, 50, 0.7, 0]], np.float32)]
    fast, _ = _score(dets, labels)
    # precision 1, 1/2, 2/3 at recalls .5, .5, 1 -> envelope: 1 up to recall .5, 2/3 after
    assert fast.map50 == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)


def test_class_without_ground_truth_is_ignored_and_missed_class_counts_zero():
    labels = [np.array([_label(0, 10, 10, 50, 50), _label(1, 60, 60, 90, 90)], dtype=np.float32)]
    dets = [np.array([[10, 10, 50, 50, 0.9, 0], [0, 0, 20, 20, 0.9, 2]], dtype=np.float32)]
    fast, coco = _score(dets, labels)
    assert list(fast.classes) == [0, 1]
    assert fast.map50 == pytest.approx(0.5)  # class 0: 1.0, class 1 (missed): 0.0, class 2: no GT
    assert coco["mAP50"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(4))
def test_fast_ap_equals_pycocotools_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    labels, dets = [], []
    for _ in range(6):
        n = int(rng.integers(1, 8))
        cxcy = rng.uniform(0.2, 0.8, (n, 2))
        wh = rng.uniform(0.05, 0.3, (n, 2))
        labels.append(np.concatenate([rng.integers(0, 3, (n, 1)), cxcy, wh], 1).astype(np.float32))
        gt = np.concatenate([(cxcy - wh / 2) * 100, (cxcy + wh / 2) * 100], 1)
        jitter = gt + rng.normal(0, 3, gt.shape)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)  # keep boxes non-degenerate
        fp = rng.uniform(0, 100, (4, 2))
        boxes = np.concatenate([jitter, np.concatenate([fp, fp + 15], 1)])
        scores = np.round(rng.uniform(0.01, 1, len(boxes)), 5)
        cls = np.concatenate([labels[-1][:, 0], rng.integers(0, 3, 4)])
        dets.append(np.concatenate([boxes, scores[:, None], cls[:, None]], 1).astype(np.float32))
    fast, coco = _score(dets, labels)
    assert fast.map == pytest.approx(coco["mAP50-95"], abs=1e-4)
    assert fast.map50 == pytest.approx(coco["mAP50"], abs=1e-4)
