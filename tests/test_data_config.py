from pathlib import Path

import pytest

from pruned_yolo.data.config import label_path, list_images, load_data_config
from pruned_yolo.data.labels import parse_label_file
from pruned_yolo.errors import DataError


def test_data_yaml_resolves_folders_and_names(tiny_data):
    cfg = load_data_config(tiny_data)
    assert cfg.names == ("class0", "class1", "class2") and cfg.nc == 3
    assert len(cfg.images("train")) == 4 and len(cfg.images("val")) == 2


def test_names_as_list_and_list_files(tiny_data):
    root = tiny_data.parent
    (root / "val.txt").write_text("./images/val/val0.jpg\n./images/val/val1.jpg\n")
    y = root / "list.yaml"
    y.write_text("path: .\ntrain: [images/train, val.txt]\nval: val.txt\nnames: [a, b, c]\n")
    cfg = load_data_config(y)
    assert cfg.names == ("a", "b", "c")
    assert len(cfg.images("train")) == 6 and len(cfg.images("val")) == 2


def test_label_path_replaces_the_images_part():
    assert label_path(Path("/d/images/train/x.jpg")) == Path("/d/labels/train/x.txt")
    assert label_path(Path("/images/d/images/a/b.png")) == Path("/images/d/labels/a/b.txt")


@pytest.mark.parametrize(
    "text, message",
    [
        ("path: .\ntrain: images/missing\nval: images/val\nnames: [a]\n", "does not exist"),
        ("path: .\ntrain: [images/train\nnames: [a]\n", "malformed YAML"),
        ("path: .\ntrain: images/train\nval: images/val\n", "names"),
        ("- just\n- a list\n", "mapping"),
        ("path: ./nowhere\ntrain: images/train\nnames: [a]\n", "root"),
    ],
)
def test_bad_data_yaml_gives_one_clear_error(tiny_data, text, message):
    y = tiny_data.parent / "bad.yaml"
    y.write_text(text)
    with pytest.raises(DataError, match=message):
        load_data_config(y)


def test_missing_data_yaml(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_data_config(tmp_path / "nope.yaml")


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        list_images([tmp_path / "empty"])


def test_label_lines_are_checked(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text(
        "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.1 0.1\n1 1.5 0.5 0.1 0.1\n1 0.5 0.5 0.1\n"
        "1 0.5 0.5 0 0.1\nx 0.5 0.5 0.1 0.1\n\n2 0.1 0.1 0.05 0.05\n"
    )
    labels, problems = parse_label_file(f, nc=3)
    assert labels.shape == (2, 5) and labels[:, 0].tolist() == [0, 2]
    assert len(problems) == 6
    for text in ("duplicate", "class 5", "normalised", "5 columns", "zero size", "non-numeric"):
        assert any(text in p for p in problems), text
