import io
import pickle
import zipfile

import pytest
import torch

from pruned_yolo.checkpoint import convert_checkpoint, load_model, read_header, save_checkpoint
from pruned_yolo.errors import CheckpointError, UnsafeCheckpointError

from .conftest import YOLOV5N_PT, YOLOV5S_PT, needs_shared


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) and sa[k].dtype == sb[k].dtype for k in sa)


def test_round_trip_is_bit_exact(tiny_model, tmp_path):
    # make the BN statistics non-trivial so the check covers buffers too
    tiny_model.train()
    tiny_model(torch.rand(2, 3, 64, 64))
    tiny_model.names = ["a", "b", "c"]
    tiny_model.meta = {"imgsz": 64, "history": [{"step": "test"}]}
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors", note="x")
    loaded = load_model(path)
    assert _same_state(tiny_model, loaded)
    assert loaded.arch() == tiny_model.arch()
    assert loaded.names == ["a", "b", "c"]
    assert loaded.meta == {"imgsz": 64, "history": [{"step": "test"}], "note": "x"}
    assert read_header(path)["arch"] == tiny_model.arch()


def test_native_format_contains_no_pickle(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    raw = path.read_bytes()
    assert not raw.startswith(b"PK") and b"\x80\x02" not in raw[:64]
    header_len = int.from_bytes(raw[:8], "little")
    assert raw[8 : 8 + header_len].lstrip().startswith(b"{")  # JSON header, then raw tensor bytes


def test_missing_and_truncated_checkpoints_are_clear_errors(tiny_model, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_model(cut)


def test_fused_model_cannot_be_saved(tiny_model, tmp_path):
    with pytest.raises(CheckpointError, match="fused"):
        save_checkpoint(tiny_model.fuse(), tmp_path / "m.safetensors")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pt_with_disallowed_class_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"model": _Evil(marker)}, protocol=2)
    pt = tmp_path / "evil.pt"
    with zipfile.ZipFile(pt, "w") as z:
        z.writestr("archive/data.pkl", payload)
    with pytest.raises(UnsafeCheckpointError, match=r"'posix\.system'|'os\.system'|'nt\.system'"):
        load_model(pt)
    assert not marker.exists()


def test_pt_with_unknown_module_class_names_it(tmp_path):
    buf = io.BytesIO()
    # a pickle that references a class outside the allowlist: models.common.Evil
    buf.write(b"\x80\x02cmodels.common\nEvil\nq\x00)\x81q\x01.")
    pt = tmp_path / "evil2.pt"
    with zipfile.ZipFile(pt, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
    with pytest.raises(UnsafeCheckpointError, match="models.common.Evil"):
        load_model(pt)


@needs_shared
@pytest.mark.parametrize("pt, params", [(YOLOV5S_PT, 7_235_389), (YOLOV5N_PT, 1_872_157)])
def test_official_checkpoints_import_and_convert(pt, params, tmp_path):
    model = load_model(pt)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.names[:3] == ["person", "bicycle", "car"] and len(model.names) == 80
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert model.detect.spec()["anchors"][2] == [116.0, 90.0, 156.0, 198.0, 373.0, 326.0]
    out = convert_checkpoint(pt, tmp_path)
    assert out.suffix == ".safetensors"
    assert _same_state(model, load_model(out))


@needs_shared
def test_truncated_official_checkpoint_is_a_clear_error(tmp_path):
    data = YOLOV5N_PT.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_model(cut)


def test_convert_checkpoint_from_python_never_makes_a_folder_of_a_file_name(tmp_path):
    """The destination rule lives in the library: a `.pt` name is refused, not made a folder."""
    from pruned_yolo.models import build_model

    from .conftest import tiny_cfg

    src = save_checkpoint(build_model(tiny_cfg()), tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointError, match="give a .safetensors file or a folder"):
        convert_checkpoint(src, tmp_path / "conv.pt")
    assert not (tmp_path / "conv.pt").exists()
    with pytest.raises(CheckpointError, match="overwrite"):
        convert_checkpoint(src, src)
    assert convert_checkpoint(src, tmp_path / "out") == tmp_path / "out" / "tiny.safetensors"
