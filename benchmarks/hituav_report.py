"""`hituav.md` and `hituav.png` generated from `hituav.json` (see hituav.py): table, targets, plot.

.venv/bin/python benchmarks/hituav_report.py [benchmarks/results/hituav.json]
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

from common import RESULTS, markdown_table, verdict

COLUMNS = [
    ("row", "name", "`{}`"),
    ("GFLOPs", "gflops", "{:.2f}"),
    ("params", "params", "{:,}"),
    ("mAP50", "mAP50", "{:.4f}"),
    ("mAP50-95", "mAP50-95", "{:.4f}"),
    ("ORT ms", "latency_ms", "{:.2f}"),
    ("speed-up", "speedup", "{:.2f}x"),
    ("timed", "latency_run", "{}"),
    ("epochs", "epochs", "{}"),
    ("seed", "seed", "{}"),
    ("wall min", "wall_min", "{:.0f}"),
    ("method", "method", "{}"),
]
ABLATION = [
    ("Baseline", "ablation_baseline_50"),
    ("+R", "ablation_R_50"),
    ("+R+S", "ablation_RS_50"),
    ("+R+S+C", "ablation_RSC_50"),
    ("ours", "ours_50"),
]
TP_ROWS = ("tp_magnitude_50", "tp_bnscale_50", "tp_growingreg_50")
HEADLINE = ("dense_s", "dense_s_matched", "dense_s_matched_nbs16", "yolov5n_matched", "ours_50", "ours_n", *TP_ROWS)


# columns shown only where some row recorded them, after mAP50-95
OPTIONAL_COLUMNS = [
    ("start mAP50-95", "start_mAP50-95", "{:.4f}"),  # a retrained start (`--start`)
    ("hold-out mAP50-95", "holdout_mAP50-95", "{:.4f}"),  # `images/train` not trained on (`--holdout`)
]


def columns(rows: dict[str, dict]) -> list[tuple[str, str, str]]:
    """COLUMNS, with the optional columns that some row recorded."""
    extra = [c for c in OPTIONAL_COLUMNS if any(c[1] in r for r in rows.values())]
    at = [key for _, key, _ in COLUMNS].index("mAP50-95") + 1
    return [*COLUMNS[:at], *extra, *COLUMNS[at:]]


def targets(rows: dict[str, dict]) -> list[str]:
    """Each target of the issue that the rows can answer, with its figures."""
    out = []
    dense, ours = rows.get("dense_s"), rows.get("ours_50")
    if dense and ours:
        # the bar: the best dense yolov5s row as brought, or trained on for ours' epochs (any nbs); rows
        # trained for other epoch counts (dense_s_16, dense_s_40) answer other questions
        matched = (dense["epochs"], dense["epochs"] + ours["epochs"])
        ref = max(r["mAP50-95"] for n, r in rows.items() if n.startswith("dense_s") and r["epochs"] in matched)
        ratio = ours["gflops"] / dense["gflops"]
        ok = ours["mAP50-95"] >= 0.99 * ref and ratio <= 0.5
        out.append(
            f"- `ours_50` >= 0.99 x best dense ({ref:.4f} -> needs {0.99 * ref:.4f}) at <= 50% GFLOPs: "
            f"{ours['mAP50-95']:.4f} at {100 * ratio:.1f}% ({ours['mAP50-95'] / ref:.3f} of it): {verdict(ok)}"
        )
        epochs = ours["epochs"]
        out.append(
            f"- cost: `compress` defaults spend {epochs} epochs, <= 2 x the dense model's {dense['epochs']}: "
            f"{verdict(epochs <= 2 * dense['epochs'])}"
        )
    n_ours, n_small = rows.get("ours_n"), rows.get("yolov5n_matched")
    if n_ours and n_small:
        ok = n_ours["mAP50-95"] >= n_small["mAP50-95"] + 0.02 and n_ours["gflops"] <= n_small["gflops"] * 1.0001
        out.append(
            f"- `ours_n` ({n_ours['gflops']:.3f} GFLOPs) >= `yolov5n_matched` "
            f"({n_small['gflops']:.3f} GFLOPs) + 2 points: "
            f"{n_ours['mAP50-95']:.4f} vs {n_small['mAP50-95']:.4f}: {verdict(ok)}"
        )
    for name in TP_ROWS:
        if ours and rows.get(name):
            # over the seeds each side has (a single seed where there is one)
            (a, n_a), (b, n_b) = seed_mean(rows, "ours_50"), seed_mean(rows, name)
            seeds = f" (means over {n_a} and {n_b} seeds)" if n_a > 1 or n_b > 1 else ""
            out.append(
                f"- `ours_50` >= `{name}` + 1 point: {a:.4f} vs {b:.4f}{seeds} "
                f"({100 * (a - b):+.1f} points): {verdict(a >= b + 0.01)}"
            )
    if dense and dense.get("latency_ms"):
        pruned = [r for r in rows.values() if r.get("speedup") and not r["name"].startswith(("dense", "yolov5n"))]
        small = [r for r in rows.values() if r.get("speedup") and r["name"].startswith("yolov5n")]
        for r in pruned:
            flops_x = dense["gflops"] / r["gflops"]
            ok = r["speedup"] >= 0.8 * flops_x
            out.append(
                f"- latency `{r['name']}`: ONNX Runtime speed-up {r['speedup']:.2f}x vs GFLOPs ratio {flops_x:.2f}x "
                f"(needs >= {0.8 * flops_x:.2f}x): {verdict(ok)}"
            )
        for r in small:  # how far the bar is for a model designed small (no verdict: not pruned)
            flops_x = dense["gflops"] / r["gflops"]
            out.append(
                f"- reference, not a pruned row: `{r['name']}` (yolov5n as designed) runs {r['speedup']:.2f}x "
                f"at a GFLOPs ratio of {flops_x:.2f}x ({r['speedup'] / flops_x:.2f} of it; the bar is 0.8), "
                f"latency run {r.get('latency_run', '-')}"
            )
    return out


def seed_runs(rows: dict[str, dict], name: str) -> list[dict]:
    """Row `name` and its `NAME_seedN` repeats, by seed."""
    runs = [r for n, r in rows.items() if n == name or re.fullmatch(re.escape(name) + r"_seed\d+", n)]
    return sorted(runs, key=lambda r: r["seed"])


def seed_mean(rows: dict[str, dict], name: str) -> tuple[float, int]:
    """Mean mAP50-95 of row `name` over its seeds, and how many seeds."""
    values = [r["mAP50-95"] for r in seed_runs(rows, name)]
    return statistics.mean(values), len(values)


def seed_spread(rows: dict[str, dict]) -> list[str]:
    """One line per row that has `NAME_seedN` repeats: every seed's mAP50-95, the mean and the range."""
    out = []
    for name in rows:
        runs = seed_runs(rows, name)
        if len(runs) < 2 or runs[0]["name"] != name:
            continue
        values = [r["mAP50-95"] for r in runs]
        each = ", ".join(f"seed {r['seed']} {r['mAP50-95']:.4f}" for r in runs)
        out.append(
            f"- `{name}`: {each}; mean {statistics.mean(values):.4f}, range {min(values):.4f}-{max(values):.4f} "
            f"({100 * (max(values) - min(values)):.1f} points)"
        )
    return out


def plot(doc: dict, path: Path) -> None:
    """Headline rows against GFLOPs (seed means, range as error bars); every row near 50% GFLOPs
    sorted by mAP; the ablation bars once a row of it exists."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {r["name"]: r for r in doc["models"]}
    bars = [(label, seed_mean(rows, n)[0]) for label, n in ABLATION if n in rows]
    if all(n not in rows for _, n in ABLATION if n != "ours_50"):
        bars = []  # no ablation row yet: ours alone is no ablation
    panels = 3 if bars else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 5.5), dpi=110, squeeze=False)
    cost_panel(axes[0][0], rows, doc["protocol"]["imgsz"])
    half_panel(axes[0][1], rows)
    if bars:
        bx = axes[0][2]
        bx.bar([b[0] for b in bars], [b[1] for b in bars], color="tab:blue")
        for i, (_, v) in enumerate(bars):
            bx.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        bx.set_ylabel("mAP50-95 (mean over seeds)")
        bx.set_title("Ablation at 50% GFLOPs (paper Fig. 1)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def row_color(name: str) -> str:
    if name.startswith(("dense", "yolov5n")):
        return "tab:gray"
    if name.startswith("tp_"):
        return "tab:orange"
    return "tab:green" if name.startswith("ablation") else "tab:blue"


def cost_panel(ax, rows: dict[str, dict], imgsz: int) -> None:
    """The headline rows: mAP50-95 (mean over seeds, the range as an error bar) against GFLOPs."""
    for name in HEADLINE:
        if name not in rows:
            continue
        values = [r["mAP50-95"] for r in seed_runs(rows, name)]
        mean = statistics.fmean(values)
        err = [[mean - min(values)], [max(values) - mean]]
        marker = "s" if name.startswith(("dense", "yolov5n")) else ("^" if name.startswith("tp_") else "o")
        ax.errorbar(rows[name]["gflops"], mean, yerr=err, fmt=marker, color=row_color(name), ms=7, capsize=3)
        label = name + (f" (x{len(values)} seeds)" if len(values) > 1 else "")
        ax.annotate(label, (rows[name]["gflops"], mean), fontsize=7, xytext=(5, 2), textcoords="offset points")
    ax.set_xlabel(f"GFLOPs at {imgsz} px")
    ax.set_ylabel("mAP50-95 (images/val, pycocotools)")
    ax.set_title("HIT-UAV: accuracy vs cost (headline rows)")
    ax.grid(alpha=0.3)


def half_panel(ax, rows: dict[str, dict]) -> None:
    """Every row within 45-55% of the dense GFLOPs, sorted by mAP50-95 (blue ours, orange Torch-Pruning)."""
    dense = rows.get("dense_s")
    if dense is None:
        return
    half = sorted(
        (r for r in rows.values() if 0.45 <= r["gflops"] / dense["gflops"] <= 0.55), key=lambda r: r["mAP50-95"]
    )
    ax.barh([r["name"] for r in half], [r["mAP50-95"] for r in half], color=[row_color(r["name"]) for r in half])
    for i, r in enumerate(half):
        ax.text(r["mAP50-95"], i, f" {r['mAP50-95']:.4f}", va="center", fontsize=7)
    values = [r["mAP50-95"] for r in half] + [dense["mAP50-95"]]
    # the differences are a few points: do not start at 0; leave room for the labels and the dense line
    ax.set_xlim(max(0.0, min(values) - 0.03), max(values) + 0.02)
    ax.axvline(dense["mAP50-95"], color="tab:gray", ls="--", lw=1)
    ax.text(dense["mAP50-95"], len(half) - 0.5, " dense_s", fontsize=7, color="tab:gray")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("mAP50-95 (axis does not start at 0)")
    ax.set_title("Every row at 50% GFLOPs")
    ax.grid(alpha=0.3, axis="x")


def latency_runs(doc: dict) -> list[str]:
    """One line per ONNX Runtime timing run: when, on which CPU, the dense model's median."""
    runs = doc.get("latency", {}).get("runs", {})
    return [f"- latency run `{k}`: CPU {v['cpu']}, {v['timed_runs']} timed runs per model, dense_s "
            f"{v['dense_ms']:.2f} ms" for k, v in runs.items()]  # fmt: skip


def write_report(json_path: Path) -> Path:
    doc = json.loads(Path(json_path).read_text())
    rows = {r["name"]: dict(r, wall_min=r.get("wall_s", 0) / 60) for r in doc["models"]}
    p = doc["protocol"]
    md = Path(json_path).with_suffix(".md")
    spread = seed_spread(rows)
    start = p.get("start", "shared")
    title, start_arg, start_note = f"{p['name']} protocol", "", ""
    if start != "shared":
        title, start_arg = f"{title}, start {start}", f" --start {start}"
        start_note = (
            f" Every row starts from the `{start}` dense model ({p['dense_epochs']} epochs), not the shared one."
        )
    lines = [
        f"# HIT-UAV benchmark ({title})",
        "",
        f"Generated by `benchmarks/hituav_report.py` from `{Path(json_path).name}`. Data `{Path(p['data']).name}`, "
        f"{p['imgsz']} px, batch {p['batch']}, hyp {p['hyp']}; every mAP on `images/val` with pycocotools. "
        f"Machine of the first row: {doc['machine']['cpu']} ({doc['machine']['cores']} cores; later rows ran in "
        "other 2-core sessions). Latency: ONNX Runtime, batch 1, all "
        "models timed in one interleaved run with dense_s (column `timed`; the runs below), median; speed-up = "
        "dense_s median / row median within that run." + start_note,
        "",
        *latency_runs(doc),
        "",
        f"Command: `.venv/bin/python benchmarks/hituav.py{start_arg}` (rows: `--only NAME ...`).",
        "",
        *markdown_table(list(rows.values()), columns(rows)),
        "",
        "## Targets",
        "",
        *(targets(rows) or ["- no row yet answers a target"]),
        "",
        *(["## Seeds (mAP50-95 of the same row trained with another seed)", "", *spread, ""] if spread else []),
        f"![HIT-UAV]({md.with_suffix('.png').name})",
        "",
    ]
    notes = md.with_name(md.stem + "_notes.md")
    if notes.is_file():
        lines += [notes.read_text()]
    md.write_text("\n".join(lines))
    plot(doc, md.with_suffix(".png"))
    return md


if __name__ == "__main__":
    write_report(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "hituav.json")
