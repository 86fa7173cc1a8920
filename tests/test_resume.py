"""Resume after SIGKILL: a run killed mid-epoch and resumed ends exactly like an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from pruned_yolo.training.state import load_state

from .conftest import ROOT, make_dataset, tiny_cfg

EPOCHS = 3

# Trains with a callback that SIGKILLs its own process in the middle of epoch `kill_epoch`
# (0-based), after an optimizer step: nothing gets a chance to clean up.
KILLER = r"""
import json, os, signal, sys
from pruned_yolo.training import Callback, Trainer, TrainConfig

class Kill(Callback):
    def on_batch_end(self, trainer):
        if trainer.epoch == KILL_EPOCH and trainer.batch_index == 1:
            os.kill(os.getpid(), signal.SIGKILL)

cfg = TrainConfig(**json.loads(sys.argv[1]))
Trainer(cfg, callbacks=[Kill()]).fit()
"""


def _config(data: Path, project: Path, name: str) -> dict:
    return dict(
        data=str(data),
        cfg=tiny_cfg(),
        epochs=EPOCHS,
        imgsz=64,
        batch=2,
        nbs=4,
        hyp="scratch-low",
        project=str(project),
        name=name,
        workers=0,
        threads=1,
        seed=3,
        deterministic=True,
        progress=False,
    )


def _python(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kw)


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    data = make_dataset(tmp_path / "ds", n_train=6, n_val=3)
    project = tmp_path / "runs"

    full = _python(["-c", KILLER.replace("KILL_EPOCH", "-1"), json.dumps(_config(data, project, "full"))])
    assert full.returncode == 0, full.stderr[-3000:]

    killed = _python(["-c", KILLER.replace("KILL_EPOCH", "1"), json.dumps(_config(data, project, "killed"))])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = project / "killed"
    doc, _ = load_state(run / "weights" / "last_state.safetensors")
    assert doc["epoch"] == 1  # the state of the last finished epoch survived the kill

    resumed = _python(["-m", "pruned_yolo", "train", "--resume", str(run), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr

    # identical weights (EMA checkpoint and raw model), bit for bit
    for name in ("last.safetensors", "best.safetensors"):
        a = load_file(str(project / "full" / "weights" / name))
        b = load_file(str(run / "weights" / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}: {k} differs"
    sa = load_file(str(project / "full" / "weights" / "last_state.safetensors"))
    sb = load_file(str(run / "weights" / "last_state.safetensors"))
    for k in sa:
        if k.startswith(("model.", "ema.", "optim.")):
            assert torch.equal(sa[k], sb[k]), f"state {k} differs"
    # identical per-epoch results (timings excepted)
    rows_a = (project / "full" / "results.csv").read_text().splitlines()
    rows_b = (run / "results.csv").read_text().splitlines()
    assert len(rows_a) == len(rows_b) == EPOCHS + 1
    header = rows_a[0].split(",")
    t = header.index("time/epoch_s")
    for ra, rb in zip(rows_a, rows_b):
        ca, cb = ra.split(","), rb.split(",")
        assert ca[:t] + ca[t + 1 :] == cb[:t] + cb[t + 1 :]


def test_resume_errors(tmp_path):
    from pruned_yolo.cli.main import main

    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    (tmp_path / "run").mkdir()
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2
