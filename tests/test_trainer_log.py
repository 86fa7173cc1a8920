"""Training output written to a file or a pipe: one plain line per epoch, no progress bars."""

from __future__ import annotations

import logging

from pruned_yolo.training import TrainConfig, Trainer

from .conftest import make_dataset, tiny_cfg


def test_non_terminal_output_is_one_line_per_epoch(tmp_path, capsys, caplog):
    data = make_dataset(tmp_path / "ds", n_train=4, n_val=2)
    cfg = TrainConfig(
        data=str(data), cfg=tiny_cfg(), epochs=2, imgsz=64, batch=2, workers=0, project=str(tmp_path),
        name="run", progress=True, noval=True,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="pruned_yolo"):
        Trainer(cfg).fit()
    err = capsys.readouterr().err
    assert "it/s" not in err and "\r" not in err  # pytest's capture is not a terminal: no tqdm bar
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2: loss box ") and "obj " in lines[0] and "cls " in lines[0]
