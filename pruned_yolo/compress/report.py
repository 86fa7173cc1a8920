"""The compress report from plain data: per-round table, mAP-vs-cost plot, report.json.

`report.json` holds, for the dense model, every reference model and every round:
`params`, `gflops`, `latency_ms`, `mAP50`, `mAP50-95` (rounds also hold the scores right
after sparsity training and right after pruning, before fine-tuning).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..utils.files import write_json

LOGGER = logging.getLogger("pruned_yolo")


def plot_tradeoff(rows: list[dict], references: list[dict], path: Path, title: str) -> Path:
    """mAP50-95 against GFLOPs and against params: the rounds as a path, dense models as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=120)
    for ax, key, label in ((axes[0], "gflops", "GFLOPs"), (axes[1], "params", "parameters (M)")):
        scale = 1e-6 if key == "params" else 1.0
        xs = [r[key] * scale for r in rows]
        ax.plot(xs, [r["mAP50-95"] for r in rows], "o-", color="tab:red", label="pruned (rounds)")
        for r in rows:
            ax.annotate(
                r["name"], (r[key] * scale, r["mAP50-95"]), fontsize=7, xytext=(4, 4), textcoords="offset points"
            )
        for ref in references:
            ax.plot(ref[key] * scale, ref["mAP50-95"], "s", color="tab:blue")
            ax.annotate(
                ref["name"],
                (ref[key] * scale, ref["mAP50-95"]),
                fontsize=8,
                xytext=(4, -10),
                textcoords="offset points",
                color="tab:blue",
            )
        ax.set_xlabel(label)
        ax.set_ylabel("mAP50-95")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _md_table(rows: list[dict]) -> list[str]:
    lines = [
        "| model | params | GFLOPs | ORT latency ms | mAP50 | mAP50-95 | after sparsity (50-95) | "
        "pruned, before fine-tune (50-95) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        sp = r.get("sparse", {}).get("mAP50-95")
        pr = r.get("pruned", {}).get("mAP50-95")
        lat = r.get("latency_ms")
        lines.append(
            f"| {r['name']} | {r['params']:,} | {r['gflops']:.3g} | {'-' if lat is None else f'{lat:.1f}'} | "
            f"{r['mAP50']:.4f} | {r['mAP50-95']:.4f} | {'-' if sp is None else f'{sp:.4f}'} | "
            f"{'-' if pr is None else f'{pr:.4f}'} |"
        )
    return lines


def guard_sentence(guard: dict) -> str:
    """What the accuracy guard (--max-map-drop) did, in one sentence."""
    head = (
        f"Accuracy guard (--max-map-drop {guard['max_map_drop']}): round {guard['stopped_at_round']} was "
        f"{guard['drop']:.4f} mAP50-95 below the dense model, "
    )
    if guard["met"]:
        return head + f"so compression stopped there and the final model is round {guard['final_round']}."
    return head + "and no round was within the limit: the final model is round 1, over the allowed drop."


def latency_sentence(lt: dict) -> str:
    """What --target-latency-ms asked for and what the final model measures."""
    head = (
        f"Latency target {lt['target_ms']:.2f} ms (ONNX Runtime, {lt['threads']} threads; "
        f"dense {lt['dense_ms']:.2f} ms): budget {lt['gflops']:.3f} GFLOPs "
        f"(the dense model pruned to it measured {lt['planned_ms']:.2f} ms); "
    )
    if lt["measured_ms"] is None:
        return head + "final model not timed (--latency-runs 0)."
    verdict = "met" if lt["met"] else "NOT met"
    return head + f"final model {lt['measured_ms']:.2f} ms: {verdict}."


def write_report(report: dict, out: Path, title: str) -> dict:
    """report.json / report.md / report.png of a finished compress run, from plain data.

    `report` holds `dense`, `references` and `rounds` (rows with `name`, `params`, `gflops`,
    `mAP50`, `mAP50-95` and optionally `latency_ms`), `final` and `guard`."""
    out = Path(out)
    dense, references, rounds = report["dense"], report["references"], report["rounds"]
    write_json(out / "report.json", report)
    plot_tradeoff([dense] + rounds, references + [dense], out / "report.png", title)
    table = _md_table([dense] + references + rounds)
    lines = [f"# Compress report: {title}", "", *table]
    if report.get("guard"):
        lines += ["", guard_sentence(report["guard"])]
    if report.get("latency_target"):
        lines += ["", latency_sentence(report["latency_target"])]
    int8 = report.get("final", {}).get("int8")
    if int8:
        f32 = int8["float32"]
        lines += [
            "",
            f"INT8 (ONNX Runtime, square letterbox): mAP50-95 {int8['mAP50-95']:.4f} (float32 {f32['mAP50-95']:.4f}), "
            f"{int8['latency_ms']:.2f} ms (float32 {f32['latency_ms']:.2f} ms): `{int8['onnx']}`",
        ]
    if report.get("parity"):
        from ..export.parity import format_parity

        lines += ["", "## Parity: PyTorch, ONNX Runtime float32 and INT8", "", format_parity(report["parity"])]
    lines += ["", "![mAP vs cost](report.png)", ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    LOGGER.info("\n".join(table))
    LOGGER.info("report: %s", out / "report.md")
    return report
