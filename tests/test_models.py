import json

import pytest
import torch

from pruned_yolo.errors import ConfigError
from pruned_yolo.models import YOLO, arch_from_cfg, available_configs, build_model, check_arch
from pruned_yolo.utils.torch_utils import count_params, gflops

from .conftest import tiny_cfg

# official table (v6.1 README; GFLOPs at 640) and the seed paper's v4.0 yolov5l
OFFICIAL = {"yolov5n": (1.9e6, 4.5), "yolov5s": (7.2e6, 16.5), "yolov5m": (21.2e6, 49.0), "yolov5l": (46.5e6, 109.1)}


@pytest.mark.parametrize("name", available_configs())
def test_every_shipped_config_builds_and_runs(name):
    model = build_model(name, nc=5)
    model.train()
    raw = model(torch.zeros(1, 3, 64, 96))
    assert [tuple(r.shape) for r in raw] == [(1, 3, 8, 12, 10), (1, 3, 4, 6, 10), (1, 3, 2, 3, 10)]
    model.eval()
    decoded, _ = model(torch.zeros(2, 3, 64, 64))
    assert decoded.shape == (2, 3 * (64 + 16 + 4), 10)


def test_shipped_configs_include_the_paper_baseline():
    assert {"yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x", "yolov5l-v4"} <= set(available_configs())
    types = {layer["type"] for layer in arch_from_cfg("yolov5l-v4")["layers"]}
    assert {"Focus", "SPP", "C3"} <= types


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_params_and_gflops_match_official_table(name):
    model = build_model(name)
    params, flops = OFFICIAL[name]
    assert abs(count_params(model) - params) / params < 0.03  # table rounds to 0.1M
    assert abs(gflops(model, 640) - flops) / flops < 0.01


def test_yolov5s_parameter_count_is_exact():
    assert count_params(build_model("yolov5s")) == 7_235_389


def test_arch_is_json_and_rebuilds_the_same_model(tiny_model):
    arch = json.loads(json.dumps(tiny_model.arch()))
    rebuilt = YOLO(arch)
    rebuilt.load_state_dict(tiny_model.state_dict(), strict=True)
    x = torch.rand(1, 3, 64, 64)
    tiny_model.eval(), rebuilt.eval()
    assert torch.equal(tiny_model(x)[0], rebuilt(x)[0])
    assert rebuilt.arch() == arch


def test_irregular_widths_and_depths_build():
    arch = arch_from_cfg(tiny_cfg())
    c3 = next(layer for layer in arch["layers"] if layer["type"] == "C3" and layer["args"]["shortcut"])
    c3["args"]["bottlenecks"] = []  # every Bottleneck pruned
    head_c3 = next(layer for layer in arch["layers"] if layer["type"] == "C3" and not layer["args"]["shortcut"])
    head_c3["args"]["bottlenecks"] = [[3, 5]]  # ragged hidden width, output width differs from cv1
    model = YOLO(arch)
    model.eval()
    model(torch.zeros(1, 3, 64, 64))
    assert model.arch()["layers"] == arch["layers"]


def test_width_mismatch_is_a_clear_error():
    arch = arch_from_cfg(tiny_cfg())
    arch["layers"][1]["args"]["c1"] += 1
    with pytest.raises(ConfigError, match="layer 1 .*input channels"):
        check_arch(arch)


def test_unknown_module_in_yaml_is_a_clear_error(tmp_path):
    cfg = tiny_cfg()
    cfg["backbone"] = [list(r) for r in cfg["backbone"]]
    cfg["backbone"][2] = [-1, 1, "C3Ghost", [128]]
    with pytest.raises(ConfigError, match="unknown module 'C3Ghost'"):
        arch_from_cfg(cfg)


def test_yaml_strings_are_never_evaluated():
    cfg = tiny_cfg()
    cfg["head"] = [list(r) for r in cfg["head"]]
    cfg["head"][-1] = [[17, 20, 23], 1, "Detect", ["__import__('os').system('true')", "anchors"]]
    with pytest.raises(ConfigError):
        arch_from_cfg(cfg)


def test_fuse_keeps_outputs(tiny_model):
    tiny_model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = tiny_model(x)[0]
        fused = tiny_model.fuse()(x)[0]
    assert torch.allclose(ref, fused, atol=1e-4)
