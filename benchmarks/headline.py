"""Headline benchmark: yolov5s v6.0 compressed on coco128 train2017, evaluated on val2017.

Every trained model uses the same recipe (image size, epochs, batch, hyp, distillation
from the dense yolov5s) and differs only in the method. Entries (NN = the budget in % of
the dense GFLOPs, `--flops-ratio`):

* `yolov5s_dense`, `yolov5n_dense`: the official checkpoints, evaluated at the benchmark size;
* `yolov5s_finetuned`: control, the dense yolov5s trained with the same recipe (what
  training on 128 images alone does to it);
* `ours_NN` (Pruned-YOLO, R+S+C): `compress` to NN % of the dense GFLOPs; `ours_n`: one more
  round from it down to yolov5n's GFLOPs;
* `tp_bnscale_NN`, `tp_magnitude_NN`: Torch-Pruning's BatchNorm-scale pruner (network
  slimming, with its own `regularize` L1 sparsity phase) and its L1 magnitude pruner
  (pruned from the dense model, then fine-tuned for all the epochs);
* the ablation of the paper's Fig. 1: `ablation_baseline_NN` (bn importance, no mask,
  constant factor), `ablation_R_NN`, `ablation_R_S_NN`, and `ours_NN` (= +R+S+C);
* `ours_NN_nodistill`: what distillation adds;
* `ours_NN_budgetmask` (beyond the paper): the soft mask takes, every epoch, exactly the
  channels the round's pruning will remove (`compress --mask-target budget --mask-period 1`);
* `ours_NN_groupnorm` (beyond the paper): channel scores divided by their group's mean
  before the global ranking (`compress --group-normalize mean`), and
  `ours_NN_budgetmask_groupnorm` with both.

`--tag _X` appends `_X` to the trained entries' names, so runs at other epochs sit beside
the default ones. Results are saved after every model (`benchmarks/results/headline.json`);
a rerun skips what is done, and an interrupted compress resumes at its phase. At the end
all models are timed in ONNX Runtime in one interleaved run and the markdown table and
plots are written.

    .venv/bin/python benchmarks/headline.py --flops-ratio 0.8   # all entries at 80 % GFLOPs
    .venv/bin/python benchmarks/headline.py --report            # only latency, tables and plots
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from common import RESULTS, RUNS, SHARED, relative, write_results
from hituav import tp_prune

from pruned_yolo import load_model, save_checkpoint
from pruned_yolo.compress import CompressConfig, Compressor, DistillationCallback
from pruned_yolo.evaluation.validator import Validator
from pruned_yolo.pruning import trace_forward
from pruned_yolo.training import Callback, TrainConfig, load_hyp, train_or_resume
from pruned_yolo.utils.torch_utils import count_params, gflops

DATA = SHARED / "datasets" / "coco128" / "coco128.yaml"
DENSE_S = SHARED / "weights" / "yolov5s_v6.0.pt"
DENSE_N = SHARED / "weights" / "yolov5n_v6.1.pt"
WORK = RUNS / "headline"
LOGGER = logging.getLogger("headline")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--sparsity-epochs", type=int, default=4)
    p.add_argument("--finetune-epochs", type=int, default=6)
    p.add_argument("--sparsity", type=float, default=0.02)
    p.add_argument("--bn-lr-mult", type=float, default=10.0)
    p.add_argument("--flops-ratio", type=float, default=0.5, help="budget of the *_NN models (fraction of dense)")
    p.add_argument("--lr0", type=float, default=0.001)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--latency-runs", type=int, default=30)
    p.add_argument("--only", nargs="*", help="run only these entries (names as in headline.json)")
    p.add_argument(
        "--tag", default="", help="suffix of the trained entries' names, for runs at other epochs (e.g. _long)"
    )
    p.add_argument("--report", action="store_true", help="skip training: latency, tables and plots only")
    return p.parse_args()


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.path = RESULTS / "headline.json"
        self.doc = json.loads(self.path.read_text()) if self.path.is_file() else {}
        if self.doc.get("settings", {}).get("imgsz") not in (None, args.imgsz):
            raise SystemExit(f"{self.path} holds a run at another image size; move it away first")
        if not args.tag or "settings" not in self.doc:  # settings describe the untagged entries
            self.doc["settings"] = self.settings()
        self.doc.setdefault("models", {})
        for name, m in self.doc["models"].items():  # entries saved before recipes were recorded
            if m.get("epochs") and "recipe" not in m:
                m["recipe"] = self.recipe(
                    self.doc["settings"], all_finetune=name.startswith(("tp_magnitude", "yolov5s_finetuned"))
                )
        self.pct = round(100 * args.flops_ratio)
        self.tag = args.tag
        self.validator = Validator(str(DATA), imgsz=args.imgsz, batch_size=16)

    def settings(self) -> dict:
        a = self.args
        return {
            "imgsz": a.imgsz,
            "flops_ratio": a.flops_ratio,
            "sparsity_epochs": a.sparsity_epochs,
            "finetune_epochs": a.finetune_epochs,
            "sparsity": a.sparsity,
            "bn_lr_mult": a.bn_lr_mult,
            "batch": a.batch,
            "nbs": a.batch,
            "hyp": "finetune",
            "lr0": a.lr0,
            "momentum": a.momentum,
            "distill_teacher": DENSE_S.name,
            "data": "coco128: train on train2017 (128 images), evaluate on val2017 (128, disjoint)",
        }

    @staticmethod
    def recipe(st: dict, all_finetune: bool = False) -> dict:
        """Epochs and sparsity settings of one trained entry (all_finetune: no sparsity phase, all epochs fine-tune)."""
        total = st["sparsity_epochs"] + st["finetune_epochs"]
        return {
            "sparsity_epochs": 0 if all_finetune else st["sparsity_epochs"],
            "finetune_epochs": total if all_finetune else st["finetune_epochs"],
            **{k: st[k] for k in ("sparsity", "bn_lr_mult", "lr0", "momentum", "batch")},
        }

    def hyp(self) -> dict:
        return {**load_hyp("finetune"), "lr0": self.args.lr0, "momentum": self.args.momentum}

    def save(self) -> None:
        write_results("headline", self.doc)

    def done(self, name: str) -> bool:
        return name in self.doc["models"] and "mAP50-95" in self.doc["models"][name]

    def record(self, name: str, weights: Path, method: str, epochs: int, **extra) -> None:
        model = load_model(weights)
        m = self.validator(model, "cpu", progress=False)
        self.doc["models"][name] = {
            "name": name,
            "method": method,
            "weights": relative(weights),
            "params": count_params(model),
            "gflops": round(gflops(model, self.args.imgsz), 4),
            "mAP50": round(m["mAP50"], 4),
            "mAP50-95": round(m["mAP50-95"], 4),
            "imgsz": self.args.imgsz,
            "epochs": epochs,
            **extra,
        }
        if epochs:
            self.doc["models"][name]["recipe"] = self.recipe(
                self.settings(), all_finetune=name.startswith(("tp_magnitude", "yolov5s_finetuned"))
            )
        self.save()
        LOGGER.info("%s: %s", name, json.dumps(self.doc["models"][name]))

    # -- our compress -------------------------------------------------------------------------
    def compress(self, name: str, weights: Path, **overrides) -> dict:
        a = self.args
        run = WORK / name
        settings = dict(
            weights=str(weights),
            data=str(DATA),
            iterations=1,
            sparsity_epochs=a.sparsity_epochs,
            finetune_epochs=a.finetune_epochs,
            sparsity=a.sparsity,
            bn_lr_mult=a.bn_lr_mult,
            imgsz=a.imgsz,
            batch=a.batch,
            nbs=a.batch,
            hyp=self.hyp(),
            workers=a.workers,
            distill=True,
            teacher=str(DENSE_S),
            latency_runs=0,
            project=str(WORK),
            name=name,
            exist_ok=True,
            progress=False,
        )
        config = CompressConfig(**{**settings, **overrides})
        resume = run if (run / "state.json").is_file() else None
        report = Compressor(config, resume).run()
        return report

    def ours(self, name: str, method: str, weights: Path = DENSE_S, **overrides) -> None:
        if self.done(name):
            return
        budget = overrides.pop("budget", {"target_flops_ratio": self.args.flops_ratio})
        report = self.compress(name, weights, **budget, **overrides)
        r = report["rounds"][-1]
        epochs = self.args.sparsity_epochs + self.args.finetune_epochs
        self.record(
            name,
            WORK / name / "final.safetensors",
            method,
            epochs,
            after_sparsity=r.get("sparse"),
            pruned_before_finetune=r.get("pruned"),
            compress_time_s=round(report.get("time_s") or 0, 1),
        )

    # -- Torch-Pruning baselines -----------------------------------------------------------------
    def train(self, name: str, weights: Path, epochs: int, callbacks: list, hyp: dict | None = None) -> Path:
        """Train `name` (or resume it where it stopped; a finished run is not trained again)."""
        a = self.args
        cfg = TrainConfig(
            data=str(DATA), weights=str(weights), epochs=epochs, imgsz=a.imgsz, batch=a.batch, nbs=a.batch,
            hyp=hyp or self.hyp(), workers=a.workers, project=str(WORK), name=name, exist_ok=True, progress=False,
        )  # fmt: skip
        return train_or_resume(cfg, callbacks)

    def teacher(self) -> list:
        return [DistillationCallback(load_model(DENSE_S), 1.0)]

    def tp_magnitude(self) -> None:
        name = f"tp_magnitude_{self.pct}{self.tag}"
        if self.done(name):
            return
        pruned = WORK / f"{name}_pruned.safetensors"
        if not pruned.is_file():
            target = self.args.flops_ratio * gflops(load_model(DENSE_S), self.args.imgsz)
            save_checkpoint(tp_prune(load_model(DENSE_S), "magnitude", target, self.args.imgsz), pruned)
        before = self.validator(load_model(pruned), "cpu", progress=False)
        epochs = self.args.sparsity_epochs + self.args.finetune_epochs
        last = self.train(name, pruned, epochs, self.teacher())
        self.record(
            name,
            last,
            "Torch-Pruning MagnitudePruner (L1), global, round_to 8",
            epochs,
            pruned_before_finetune={"mAP50-95": before["mAP50-95"]},
        )

    def dense_finetuned(self) -> None:
        """Control: the dense yolov5s trained with the same recipe and epochs, nothing pruned."""
        name = f"yolov5s_finetuned{self.tag}"
        if self.done(name):
            return
        epochs = self.args.sparsity_epochs + self.args.finetune_epochs
        last = self.train(name, DENSE_S, epochs, self.teacher())
        self.record(name, last, "control: dense yolov5s fine-tuned, same recipe, nothing pruned", epochs)

    def tp_bnscale(self) -> None:
        name = f"tp_bnscale_{self.pct}{self.tag}"
        if self.done(name):
            return
        a = self.args
        hyp = {**self.hyp(), "bn_lr_mult": a.bn_lr_mult}
        callbacks = [TPRegularizer(a.sparsity), *self.teacher()]
        sparse = self.train(f"{name}_sparsity", DENSE_S, a.sparsity_epochs, callbacks, hyp)
        pruned = WORK / f"{name}_pruned.safetensors"
        if not pruned.is_file():
            target = a.flops_ratio * gflops(load_model(DENSE_S), a.imgsz)
            save_checkpoint(tp_prune(load_model(sparse), "bnscale", target, a.imgsz), pruned)
        before = self.validator(load_model(pruned), "cpu", progress=False)
        last = self.train(name, pruned, a.finetune_epochs, self.teacher())
        self.record(
            name,
            last,
            "Torch-Pruning BNScalePruner (network slimming: regularize() L1 sparsity phase), global, round_to 8",
            a.sparsity_epochs + a.finetune_epochs,
            pruned_before_finetune={"mAP50-95": before["mAP50-95"]},
        )


class TPRegularizer(Callback):
    """Torch-Pruning's BNScalePruner.regularize (grad(gamma) += reg * sign(gamma)) after backward."""

    def __init__(self, reg: float):
        self.reg = reg
        self.pruner = None

    def on_train_start(self, trainer) -> None:
        import torch_pruning as tp

        self.pruner = tp.pruner.BNScalePruner(
            trainer.net, torch.zeros(1, 3, 64, 64), importance=tp.importance.BNScaleImportance(),
            ignored_layers=list(trainer.net.detect.m), forward_fn=trace_forward, reg=self.reg,
        )  # fmt: skip

    def after_backward(self, trainer) -> None:
        self.pruner.regularize(trainer.net, reg=self.reg)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args()
    torch.set_num_threads(2)
    b = Bench(args)
    n_gflops = gflops(load_model(DENSE_N), args.imgsz)
    pct, t = b.pct, args.tag
    steps = {
        "yolov5s_dense": lambda: b.done("yolov5s_dense") or b.record("yolov5s_dense", DENSE_S, "official", 0),
        "yolov5n_dense": lambda: b.done("yolov5n_dense") or b.record("yolov5n_dense", DENSE_N, "official", 0),
        f"yolov5s_finetuned{t}": b.dense_finetuned,
        f"ours_{pct}{t}": lambda: b.ours(
            f"ours_{pct}{t}", "Pruned-YOLO R+S+C (bn-kernel, soft mask, cosine) + distillation"
        ),
        f"tp_magnitude_{pct}{t}": b.tp_magnitude,
        f"tp_bnscale_{pct}{t}": b.tp_bnscale,
        f"ablation_R_{pct}{t}": lambda: b.ours(
            f"ablation_R_{pct}{t}", "+R (no mask, constant)", sparsity_schedule="constant", mask="none"
        ),
        f"ablation_R_S_{pct}{t}": lambda: b.ours(
            f"ablation_R_S_{pct}{t}", "+R+S (soft mask, constant factor)", sparsity_schedule="constant"
        ),
        f"ablation_baseline_{pct}{t}": lambda: b.ours(
            f"ablation_baseline_{pct}{t}",
            "Baseline (bn importance, no mask, constant; pruned from the sparse model of +R)",
            WORK / f"ablation_R_{pct}{t}" / "round1" / "sparsity" / "weights" / "last.safetensors",
            importance="bn",
            sparsity_epochs=0,
        ),
        f"ours_n{t}": lambda: b.ours(
            f"ours_n{t}",
            f"Pruned-YOLO R+S+C + distillation, round 2 from ours_{pct} to yolov5n's GFLOPs",
            WORK / f"ours_{pct}{t}" / "final.safetensors",
            budget={"target_gflops": n_gflops},
        ),
        f"ours_{pct}{t}_budgetmask": lambda: b.ours(
            f"ours_{pct}{t}_budgetmask",
            "Pruned-YOLO R+S+C, soft mask on the round's pruning plan every epoch (beyond the paper) + distillation",
            mask_target="budget",
            mask_period=1,
        ),
        f"ours_{pct}{t}_groupnorm": lambda: b.ours(
            f"ours_{pct}{t}_groupnorm",
            "Pruned-YOLO R+S+C, scores normalized per group before ranking (beyond the paper) + distillation",
            group_normalize="mean",
        ),
        f"ours_{pct}{t}_budgetmask_groupnorm": lambda: b.ours(
            f"ours_{pct}{t}_budgetmask_groupnorm",
            "Pruned-YOLO R+S+C, budget soft mask every epoch and group-normalized scores (beyond the paper)"
            " + distillation",
            mask_target="budget",
            mask_period=1,
            group_normalize="mean",
        ),
        f"ours_{pct}{t}_nodistill": lambda: b.ours(
            f"ours_{pct}{t}_nodistill", "Pruned-YOLO R+S+C, no distillation", distill=False
        ),
    }
    if not args.report:
        for name, step in steps.items():
            if args.only and name not in args.only:
                continue
            t0 = time.time()
            step()
            LOGGER.info("== %s done (%.0f s)", name, time.time() - t0)
    from headline_report import write_report  # noqa: PLC0415 (sibling script module)

    write_report(b.doc, args, WORK)


if __name__ == "__main__":
    main()
