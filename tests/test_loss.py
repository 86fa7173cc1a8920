import math

import pytest
import torch

from pruned_yolo.models import build_model
from pruned_yolo.training.loss import DetectionLoss, bbox_ciou, scaled_gains
from pruned_yolo.training.optim import LrLambda, build_optimizer, param_groups, warmup_iterations

from .conftest import tiny_cfg

HYP = {"box": 0.05, "cls": 0.5, "obj": 1.0, "anchor_t": 4.0}


@pytest.fixture(autouse=True)
def _one_thread():
    """Small ops: one thread is faster, and immune to OpenMP busy-waiting on a loaded CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_ciou_identical_and_disjoint():
    a = torch.tensor([[10.0, 10.0, 4.0, 6.0], [0.0, 0.0, 2.0, 2.0]])
    assert torch.allclose(bbox_ciou(a, a), torch.ones(2), atol=1e-6)
    b = torch.tensor([[30.0, 10.0, 4.0, 6.0], [0.0, 0.0, 4.0, 4.0]])
    c = bbox_ciou(a, b)
    assert c[0] < 0  # disjoint: the centre-distance penalty makes CIoU negative
    # nested, same centre: IoU 0.25, no distance term, same aspect ratio -> exactly the IoU
    assert c[1].item() == pytest.approx(0.25, abs=1e-5)


def test_gains_rescaled_like_yolov5():
    g = scaled_gains(HYP, nl=3, nc=80, imgsz=640)
    assert g == pytest.approx({"box": 0.05, "cls": 0.5, "obj": 1.0})
    g = scaled_gains(HYP, nl=3, nc=4, imgsz=320)
    assert g == pytest.approx({"box": 0.05, "cls": 0.5 * 4 / 80, "obj": 0.25})
    g = scaled_gains(HYP, nl=2, nc=80, imgsz=640)
    assert g["box"] == pytest.approx(0.075)


def _model(nc=3):
    torch.manual_seed(0)
    return build_model(tiny_cfg(nc)).train()


def test_target_assignment_neighbour_cells():
    model = _model()
    loss = DetectionLoss(model, HYP, 128)
    preds = model(torch.zeros(1, 3, 128, 128))
    # one 24x24 px box whose centre sits in the lower-left quarter of its P3 cell
    cx, cy = (5 * 8 + 2) / 128, (7 * 8 + 6) / 128
    targets = torch.tensor([[0, 1, cx, cy, 24 / 128, 24 / 128]])
    tcls, tbox, indices, anchors = loss.build_targets(preds, targets)
    b, a, gj, gi = indices[0]
    # P3 anchors (10,13) (16,30) (33,23) px -> all within ratio 4 of 24x24
    assert sorted(set(a.tolist())) == [0, 1, 2]
    cells = sorted({(int(y), int(x)) for y, x in zip(gj, gi)})
    # own cell (7, 5), left neighbour (x 0.25 < 0.5 -> 4), lower neighbour (y 0.75 > 0.5 -> 8)
    assert cells == [(7, 4), (7, 5), (8, 5)]
    assert len(b) == 9 and (tcls[0] == 1).all()
    # offsets of the box centre relative to each assigned cell stay within (-0.5, 1.5)
    assert ((tbox[0][:, :2] > -0.5) & (tbox[0][:, :2] < 1.5)).all()
    # P5 anchors (116,90)... are more than 4x the box: no match on level 2
    assert len(indices[2][0]) == 0


def test_anchor_t_filters_matches():
    model = _model()
    preds = model(torch.zeros(1, 3, 128, 128))
    targets = torch.tensor([[0, 0, 0.5, 0.5, 24 / 128, 24 / 128]])
    strict = DetectionLoss(model, {**HYP, "anchor_t": 1.5}, 128)
    loose = DetectionLoss(model, HYP, 128)
    n_strict = sum(len(i[0]) for i in strict.build_targets(preds, targets)[2])
    n_loose = sum(len(i[0]) for i in loose.build_targets(preds, targets)[2])
    assert 0 < n_strict < n_loose


def test_loss_shapes_and_batch_scaling():
    model = _model()
    loss_fn = DetectionLoss(model, HYP, 64)
    x = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.3, 0.6, 0.2, 0.2]])
    loss, items = loss_fn(model(x), targets)
    assert loss.shape == (1,) and items.shape == (3,) and not items.requires_grad
    assert loss.item() == pytest.approx(items.sum().item() * 2, rel=1e-5)
    # no targets: only objectness
    loss0, items0 = loss_fn(model(x), torch.zeros((0, 6)))
    assert items0[0] == 0 and items0[2] == 0 and items0[1] > 0
    loss0.backward()


def test_overfits_one_batch():
    model = _model()
    loss_fn = DetectionLoss(model, HYP, 64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.3, 0.6, 0.2, 0.2]])
    losses = []
    for _ in range(30):
        loss, _ = loss_fn(model(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(math.isfinite(v) for v in losses)


def test_param_groups_cover_every_parameter_once():
    model = _model()
    decay, bn, bias = param_groups(model)
    ids = [id(p) for p in decay + bn + bias]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert all(p.ndim > 1 for p in decay) and all(p.ndim == 1 for p in bn + bias)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert len(bn) == n_bn
    assert len(bias) == n_bn + model.detect.nl  # BN betas + Detect conv biases
    opt = build_optimizer(model, 0.01, 0.937, 5e-4)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0, 0.0]
    assert opt.param_groups[0]["nesterov"]


def test_lr_schedules_and_warmup():
    for kind in ("cos", "linear"):
        lf = LrLambda(kind, 0.01, 10)
        assert lf(0) == pytest.approx(1.0) and lf(10) == pytest.approx(0.01)
        assert all(lf(e) >= lf(e + 1) for e in range(10))
    assert LrLambda("cos", 0.1, 10)(5) == pytest.approx(0.55)
    assert warmup_iterations(3, 1000, 100000) == 3000
    assert warmup_iterations(3, 10, 100000) == 100  # at least 100 iterations
    assert warmup_iterations(3, 10, 60) == 30  # at most half the run
    assert warmup_iterations(0, 10, 60) == 0
