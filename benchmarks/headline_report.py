"""Latency, markdown tables and plots of the headline benchmark (see headline.py).

`headline.md` is generated from `headline.json`; the hand-written analysis (attempts that
were stopped, discussion) lives in `headline_notes.md` and is appended verbatim.
"""

from __future__ import annotations

from pathlib import Path

from common import RESULTS, ROOT, verdict, write_results

from pruned_yolo.benchmark import onnx_latency_ms


def ablation(pct: int) -> list[tuple[str, str]]:
    """The paper's Fig. 1 bars: (label, entry name) at budget `pct` % of dense GFLOPs."""
    return [
        ("Baseline", f"ablation_baseline_{pct}"),
        ("+R", f"ablation_R_{pct}"),
        ("+R+S", f"ablation_R_S_{pct}"),
        ("+R+S+C", f"ours_{pct}"),
    ]


def measure_latencies(doc: dict, workdir: Path, imgsz: int, runs: int) -> None:
    """ONNX Runtime batch-1 median latency of every model, interleaved in one run."""
    models = {name: ROOT / m["weights"] for name, m in doc["models"].items()}
    models = {k: v for k, v in models.items() if v.is_file()}
    if not models or runs <= 0:
        return
    (workdir / "latency").mkdir(parents=True, exist_ok=True)
    lat = onnx_latency_ms(models, imgsz, runs, None, workdir / "latency")
    for name, ms in lat.items():
        doc["models"][name]["latency_ms"] = round(ms, 2)
    doc["latency"] = {"runtime": "onnxruntime", "batch": 1, "runs": runs, "interleaved": True}


def _get(m: dict | None, key: str, fmt: str = "{:.4f}") -> str:
    if not m or m.get(key) is None:
        return "-"
    return fmt.format(m[key])


def _schedule(m: dict) -> str:
    r = m.get("recipe") or {}
    return f"{r['sparsity_epochs']}+{r['finetune_epochs']}" if "sparsity_epochs" in r else "-"


def _total(m: dict) -> int:
    r = m.get("recipe") or {}
    return r.get("sparsity_epochs", 0) + r.get("finetune_epochs", 0)


def targets(doc: dict) -> list[str]:
    """The issue's targets that the entries in `doc` can answer, each with its figures."""
    ms = doc["models"]
    pct = round(100 * doc["settings"]["flops_ratio"])
    s, n = ms.get("yolov5s_dense"), ms.get("yolov5n_dense")
    ours = ms.get(f"ours_{pct}")
    lines = []
    if s and ours and pct <= 50:
        ratio = ours["mAP50-95"] / s["mAP50-95"]
        lines.append(
            f"- <= 50% GFLOPs, mAP50-95 >= 95% of dense yolov5s: {ours['gflops']:.2f} / {s['gflops']:.2f} GFLOPs, "
            f"mAP50-95 {ours['mAP50-95']:.4f} vs {s['mAP50-95']:.4f} = {ratio:.1%}: "
            + verdict(ratio >= 0.95 and ours["gflops"] <= 0.5 * s["gflops"])
        )
    if n and "ours_n" in ms:
        o = ms["ours_n"]
        lines.append(
            f"- <= yolov5n GFLOPs, mAP50-95 above dense yolov5n: {o['gflops']:.2f} vs {n['gflops']:.2f} GFLOPs, "
            f"mAP50-95 {o['mAP50-95']:.4f} vs {n['mAP50-95']:.4f}: "
            + verdict(o["mAP50-95"] > n["mAP50-95"] and o["gflops"] <= n["gflops"])
        )
    ours_entries = [k for k in ms if k.startswith(f"ours_{pct}") and not k.endswith("_nodistill")]
    tp_entries = [k for k in ms if k.startswith((f"tp_bnscale_{pct}", f"tp_magnitude_{pct}"))]
    for name in ours_entries:
        o = ms[name]
        for tp in (k for k in tp_entries if _total(ms[k]) == _total(o)):
            d = 100 * (o["mAP50-95"] - ms[tp]["mAP50-95"])
            lines.append(
                f"- at {pct}% GFLOPs and {_total(o)} epochs, {name} ahead of {tp} by >= 1 point: "
                f"{o['mAP50-95']:.4f} vs {ms[tp]['mAP50-95']:.4f} ({d:+.1f} points): {verdict(d >= 1)}"
            )
    for name, m in ms.items():
        if (m.get("after_sparsity") or {}).get("mAP50-95") is None or not m.get("pruned_before_finetune"):
            continue
        a, b = m["after_sparsity"]["mAP50-95"], m["pruned_before_finetune"]["mAP50-95"]
        lines.append(
            f"- pruning right after sparsity training loses <= 1 point ({name}: {m['method']}): "
            f"{a:.4f} -> {b:.4f} ({100 * (a - b):.1f} points): {verdict(100 * (a - b) <= 1)}"
        )
    plain = ms.get(f"ours_{pct}_nodistill")
    if ours and plain:
        d = 100 * (ours["mAP50-95"] - plain["mAP50-95"])
        lines.append(
            f"- distillation (not a target, what it adds): ours_{pct} {ours['mAP50-95']:.4f} vs "
            f"ours_{pct}_nodistill {plain['mAP50-95']:.4f} ({d:+.1f} points)"
        )
    return lines


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = doc["models"]
    pct = round(100 * doc["settings"]["flops_ratio"])
    bars = [(label, ms[k]["mAP50-95"]) for label, k in ablation(pct) if k in ms]
    panels = 3 if len(bars) >= 2 else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 4.6), dpi=110)
    styles = {"dense": ("k", "s"), "ours": ("tab:red", "o"), "tp": ("tab:blue", "^"), "ablation": ("tab:gray", "x")}
    for name, m in ms.items():
        kind = "dense" if name.endswith("_dense") else name.split("_")[0]
        color, marker = styles.get(kind, styles["dense"])
        for ax, key in zip(axes[:2], ("gflops", "params")):
            x = m[key] / (1e6 if key == "params" else 1)
            ax.scatter(x, m["mAP50-95"], color=color, marker=marker, s=40, zorder=3)
            ax.annotate(name, (x, m["mAP50-95"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for ax, label in zip(axes[:2], ("GFLOPs", "params (M)")):
        ax.set_xlabel(f"{label} at {doc['settings']['imgsz']} px")
        ax.set_ylabel("mAP50-95 (val2017)")
        ax.grid(alpha=0.3)
    if panels == 3:
        ax = axes[2]
        colors = ["tab:gray", "tab:blue", "tab:orange", "tab:red"][: len(bars)]
        ax.bar([b[0] for b in bars], [b[1] for b in bars], color=colors)
        for i, (_, v) in enumerate(bars):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(b[1] for b in bars) * 1.15 + 1e-3)
        ax.set_ylabel("mAP50-95 after fine-tuning")
        ax.set_title(f"Ablation at {pct}% GFLOPs (cf. paper Fig. 1)")
    fig.suptitle("yolov5s v6.0 compressed on coco128 (train2017 -> val2017)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(doc: dict) -> list[str]:
    ms, st = doc["models"], doc["settings"]
    pct = round(100 * st["flops_ratio"])
    first = ["yolov5s_dense", "yolov5n_dense", f"ours_{pct}", f"tp_magnitude_{pct}", f"tp_bnscale_{pct}"]
    first += [k for _, k in ablation(pct)]
    order = [k for k in dict.fromkeys(first) if k in ms] + sorted(k for k in ms if k not in first)
    lines = [
        "| model | method | epochs (sparsity+FT) | GFLOPs | params | mAP50 | mAP50-95 | latency ms "
        "| after sparsity | pruned, before FT |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in order:
        m = ms[name]
        lines.append(
            f"| {name} | {m['method']} | {_schedule(m)} | {m['gflops']:.2f} | {m['params'] / 1e6:.2f}M | "
            f"{m['mAP50']:.4f} | {m['mAP50-95']:.4f} | {_get(m, 'latency_ms', '{:.1f}')} | "
            f"{_get(m.get('after_sparsity'), 'mAP50-95')} | {_get(m.get('pruned_before_finetune'), 'mAP50-95')} |"
        )
    return lines


def write_report(doc: dict, args, workdir: Path) -> None:
    """Time every model (ONNX Runtime, in `workdir`), then write headline.json, headline.md and headline.png."""
    measure_latencies(doc, workdir, args.imgsz, args.latency_runs)
    st = doc["settings"]
    lines = [
        "# Headline benchmark: yolov5s v6.0 compressed on coco128",
        "",
        f"Image size {st['imgsz']} for training, evaluation and latency (CPU time forces it below 640; the dense "
        "models are re-measured at this size in the same run). Train on coco128 train2017 (128 images), evaluate "
        "on the disjoint val2017 (128 images) with pycocotools. Every trained model: batch "
        f"{st['batch']} (nominal {st['nbs']}), hyp `finetune` with lr0 {st['lr0']} and momentum {st['momentum']}, "
        "distillation from the dense yolov5s in every training phase (unless stated), the epochs of its row "
        f"(s = {st['sparsity']}, BatchNorm lr x{st['bn_lr_mult']} in the sparsity phase; Torch-Pruning's "
        "magnitude pruner fine-tunes for all the epochs). Latency: ONNX Runtime, batch 1, median of interleaved "
        "runs, this 2-core CPU. Budget of the `_NN` models: NN % of the dense GFLOPs.",
        "",
        *table(doc),
        "",
        "![headline](headline.png)",
        "",
        "## Targets and measured effects (generated from headline.json)",
        "",
        *targets(doc),
        "",
        "Commands: `benchmarks/README.md`; every row is re-created by "
        "`.venv/bin/python benchmarks/headline.py --flops-ratio R --only NAME` with the settings above.",
        "",
    ]
    notes = RESULTS / "headline_notes.md"
    if notes.is_file():
        lines += [notes.read_text().rstrip(), ""]
    write_results("headline", doc, lines)
    plot(doc, RESULTS / "headline.png")
