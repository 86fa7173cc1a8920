"""Latency, markdown tables and plots of the headline benchmark (see headline.py)."""

from __future__ import annotations

import json
from pathlib import Path

TARGET_ORDER = ["yolov5s_dense", "yolov5n_dense", "ours_50", "ours_n", "tp_bnscale_50", "tp_magnitude_50"]
ABLATION = [
    ("Baseline", "ablation_baseline"),
    ("+R", "ablation_R"),
    ("+R+S", "ablation_R_S"),
    ("+R+S+C", "ours_50"),
]


def measure_latencies(doc: dict, root: Path, workdir: Path, imgsz: int, runs: int) -> None:
    """ONNX Runtime batch-1 median latency of every model, interleaved in one run."""
    from pruned_yolo.compress.report import measure_latency

    models = {name: root / m["weights"] for name, m in doc["models"].items()}
    models = {k: v for k, v in models.items() if v.is_file()}
    if not models or runs <= 0:
        return
    lat = measure_latency(models, workdir / "latency", imgsz, runs, None)
    for name, ms in lat.items():
        doc["models"][name]["latency_ms"] = round(ms, 2)
    doc["latency"] = {"runtime": "onnxruntime", "batch": 1, "runs": runs, "interleaved": True}


def _get(m: dict | None, key: str, fmt: str = "{:.4f}") -> str:
    if not m or m.get(key) is None:
        return "-"
    return fmt.format(m[key])


def targets(doc: dict) -> list[str]:
    """The issue's targets, each with the figures and met / not met."""
    ms = doc["models"]
    s, n = ms.get("yolov5s_dense"), ms.get("yolov5n_dense")
    lines = []
    if s and "ours_50" in ms:
        o = ms["ours_50"]
        ratio = o["mAP50-95"] / s["mAP50-95"]
        ok = ratio >= 0.95 and o["gflops"] <= 0.5 * s["gflops"]
        lines.append(
            f"- <= 50% GFLOPs, mAP50-95 >= 95% of dense yolov5s: {o['gflops']:.2f} / {s['gflops']:.2f} GFLOPs "
            f"({o['gflops'] / s['gflops']:.1%}), mAP50-95 {o['mAP50-95']:.4f} vs {s['mAP50-95']:.4f} "
            f"= {ratio:.1%}: **{'met' if ok else 'not met'}**"
        )
    if n and "ours_n" in ms:
        o = ms["ours_n"]
        ok = o["mAP50-95"] > n["mAP50-95"] and o["gflops"] <= n["gflops"]
        lines.append(
            f"- <= yolov5n GFLOPs, mAP50-95 above dense yolov5n: {o['gflops']:.2f} vs {n['gflops']:.2f} GFLOPs, "
            f"mAP50-95 {o['mAP50-95']:.4f} vs {n['mAP50-95']:.4f}: **{'met' if ok else 'not met'}**"
        )
    if "ours_50" in ms:
        o = ms["ours_50"]
        for tp in ("tp_bnscale_50", "tp_magnitude_50"):
            if tp in ms:
                d = 100 * (o["mAP50-95"] - ms[tp]["mAP50-95"])
                lines.append(
                    f"- ours ahead of {tp} by >= 1 point mAP50-95 at the same budget and epochs: "
                    f"{o['mAP50-95']:.4f} vs {ms[tp]['mAP50-95']:.4f} ({d:+.1f} points): "
                    f"**{'met' if d >= 1 else 'not met'}**"
                )
    for name, label in (("ablation_R", "no mask"), ("ablation_R_S", "soft mask"), ("ours_50", "soft mask, cosine")):
        m = ms.get(name)
        if m and m.get("after_sparsity") and m.get("pruned_before_finetune"):
            d = 100 * (m["after_sparsity"]["mAP50-95"] - m["pruned_before_finetune"]["mAP50-95"])
            lines.append(
                f"- pruning right after sparsity training loses <= 1 point ({label}, {name}): "
                f"{m['after_sparsity']['mAP50-95']:.4f} -> {m['pruned_before_finetune']['mAP50-95']:.4f} "
                f"({d:.1f} points): **{'met' if d <= 1 else 'not met'}**"
            )
    return lines


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = doc["models"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), dpi=110)
    styles = {"dense": ("k", "s"), "ours": ("tab:red", "o"), "tp": ("tab:blue", "^"), "ablation": ("tab:gray", "x")}
    for name, m in ms.items():
        kind = name.split("_")[0] if name.split("_")[0] in styles else "dense"
        color, marker = styles["dense" if name.endswith("_dense") else kind]
        for ax, key in zip(axes[:2], ("gflops", "params")):
            x = m[key] / (1e6 if key == "params" else 1)
            ax.scatter(x, m["mAP50-95"], color=color, marker=marker, s=40, zorder=3)
            ax.annotate(name, (x, m["mAP50-95"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for ax, label in zip(axes[:2], ("GFLOPs", "params (M)")):
        ax.set_xlabel(f"{label} at {doc['settings']['imgsz']} px")
        ax.set_ylabel("mAP50-95 (val2017)")
        ax.grid(alpha=0.3)
    bars = [(label, ms[k]["mAP50-95"]) for label, k in ABLATION if k in ms]
    if len(bars) < 2:
        axes[2].axis("off")
        axes[2].text(0.5, 0.5, "ablation not run", ha="center", va="center", transform=axes[2].transAxes)
    else:
        ax = axes[2]
        colors = ["tab:gray", "tab:blue", "tab:orange", "tab:red"][: len(bars)]
        ax.bar([b[0] for b in bars], [b[1] for b in bars], color=colors)
        for i, (_, v) in enumerate(bars):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        lo = min(b[1] for b in bars)
        ax.set_ylim(max(0, lo - 0.05), max(b[1] for b in bars) + 0.02)
        ax.set_ylabel("mAP50-95 after fine-tuning")
        ax.set_title("Ablation at 50% GFLOPs (cf. paper Fig. 1)")
    fig.suptitle("yolov5s v6.0 compressed on coco128 (train2017 -> val2017)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(doc: dict, args, results: Path, runs: Path) -> None:
    root = results.parents[1]
    measure_latencies(doc, root, runs, args.imgsz, args.latency_runs)
    (results / "headline.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(doc, results / "headline.png")
    ms = doc["models"]
    st = doc["settings"]
    lines = [
        "# Headline benchmark: yolov5s v6.0 compressed on coco128",
        "",
        f"Image size {st['imgsz']} for training, evaluation and latency (CPU time forces it below 640; the dense "
        "models are re-measured at this size in the same run). Train on coco128 train2017 (128 images), evaluate "
        "on the disjoint val2017 (128 images) with pycocotools. Every trained model: batch "
        f"{st['batch']} (nominal {st['nbs']}), hyp `finetune`, distillation from the dense yolov5s (unless "
        f"stated), {st['sparsity_epochs']} sparsity epochs + {st['finetune_epochs']} fine-tuning epochs "
        f"(s = {st['sparsity']}, BatchNorm lr x{st['bn_lr_mult']} in the sparsity phase). Latency: ONNX Runtime, "
        "batch 1, median of interleaved runs, this 2-core CPU.",
        "",
        "| model | method | GFLOPs | params | mAP50 | mAP50-95 | latency ms | pruned, before fine-tuning |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = TARGET_ORDER + [k for k in ms if k not in TARGET_ORDER]
    for name in order:
        m = ms.get(name)
        if not m:
            continue
        before = _get(m.get("pruned_before_finetune"), "mAP50-95")
        lines.append(
            f"| {name} | {m['method']} | {m['gflops']:.2f} | {m['params'] / 1e6:.2f}M | {m['mAP50']:.4f} | "
            f"{m['mAP50-95']:.4f} | {_get(m, 'latency_ms', '{:.1f}')} | {before} |"
        )
    lines += ["", "## Targets", "", *targets(doc), "", "![headline](headline.png)", ""]
    lines += ["Reproduce: `.venv/bin/python benchmarks/headline.py` (see benchmarks/README.md).", ""]
    (results / "headline.md").write_text("\n".join(lines))
