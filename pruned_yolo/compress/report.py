"""The compress report: per-round table, ONNX Runtime latency, mAP-vs-cost plot, ONNX export.

`report.json` holds, for the dense model, every reference model and every round:
`params`, `gflops`, `latency_ms`, `mAP50`, `mAP50-95` (rounds also hold the scores right
after sparsity training and right after pruning, before fine-tuning).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..checkpoint import load_model
from ..utils.files import write_json

LOGGER = logging.getLogger("pruned_yolo")


def measure_latency(models: dict[str, Path], workdir: Path, imgsz: int, runs: int, threads: int | None) -> dict:
    """ONNX Runtime median latency (ms, batch 1) of each checkpoint, all interleaved in one run."""
    from ..benchmark.latency import onnx_latency_ms

    workdir.mkdir(parents=True, exist_ok=True)
    return onnx_latency_ms(models, imgsz, runs, threads, workdir)


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


def write_report(compressor, final: Path) -> dict:
    """Latency, ONNX export, report.json / report.md / report.png for a finished compress run."""
    from ..export.onnx import export_onnx
    from .pipeline import Compressor

    assert isinstance(compressor, Compressor)
    c, state, out = compressor.config, compressor.state, compressor.dir
    dense = dict(state["dense"], name=f"{state['dense']['name']} (dense)")
    guard = state.get("guard")
    rounds = [dict(r, name=f"round {r['round']}") for r in state["rounds"] if "mAP50-95" in r]
    final_round = rounds[guard["final_round"] - 1] if guard else rounds[-1]
    references = []
    for ref in c.references:
        model = load_model(ref)
        references.append(
            {
                "name": Path(ref).stem,
                "weights": str(ref),
                **compressor._cost(model),
                **compressor._evaluate(model, f"reference {Path(ref).stem}"),
            }
        )
    paths = {"dense": Path(c.weights)} | {
        f"round{r['round']}": out / f"round{r['round']}" / "model.safetensors" for r in rounds
    }
    paths |= {f"ref_{i}": Path(ref["weights"]) for i, ref in enumerate(references)}
    if c.latency_runs > 0:
        lat = measure_latency(paths, out / "latency", c.imgsz, c.latency_runs, c.threads)
        dense["latency_ms"] = lat["dense"]
        for r in rounds:
            r["latency_ms"] = lat[f"round{r['round']}"]
        for i, ref in enumerate(references):
            ref["latency_ms"] = lat[f"ref_{i}"]
    export_onnx(load_model(final), out / "final.onnx", c.imgsz, 1, source=final.name)
    report = {
        "config": state["config"],
        "dense": dense,
        "references": references,
        "rounds": rounds,
        "final": {
            "checkpoint": str(final),
            "onnx": str(out / "final.onnx"),
            "round": final_round["round"],
            **{k: final_round[k] for k in ("params", "gflops", "mAP50", "mAP50-95") if k in final_round},
            "latency_ms": final_round.get("latency_ms"),
        },
        "guard": guard,
        "time_s": state.get("time_s"),
    }
    write_json(out / "report.json", report)
    plot_tradeoff(
        [dense] + rounds,
        references + [dense],
        out / "report.png",
        f"{Path(c.weights).stem} compressed on {Path(c.data).name} ({c.imgsz} px)",
    )
    lines = [f"# Compress report: {Path(c.weights).name} on {c.data}", ""]
    lines += _md_table([dense] + references + rounds)
    if guard:
        lines += ["", guard_sentence(guard)]
    lines += ["", "![mAP vs cost](report.png)", ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    LOGGER.info("\n".join(_md_table([dense] + references + rounds)))
    LOGGER.info("report: %s", out / "report.md")
    return report
