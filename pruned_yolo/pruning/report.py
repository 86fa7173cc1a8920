"""Plain-text and table views of prune reports (what `pruned-yolo prune` prints).

Kept apart from the planner: `pruner.py` and `latency.py` compute, this module only formats.
"""

from __future__ import annotations

from ..models.registry import get_module
from ..models.yolo import layer_inputs


def arch_widths(arch: dict) -> list[int | list[int]]:
    """Output width of every layer (Detect: its input widths) from an architecture."""
    widths, out = [], []
    for i, layer in enumerate(arch["layers"]):
        cls = get_module(layer["type"])
        c_in = layer_inputs(layer["from"], i, widths, arch.get("in_channels", 3))
        w = cls.out_width(layer["args"], c_in)
        widths.append(w)
        out.append(list(layer["args"]["ch"]) if layer["type"] == "Detect" else int(w))
    return out


def layer_table(arch_before: dict, arch_after: dict) -> list[dict]:
    """Per layer: index, type, output width before/after, Bottleneck count before/after (C3)."""
    wb, wa = arch_widths(arch_before), arch_widths(arch_after)
    rows = []
    for i, (lb, la) in enumerate(zip(arch_before["layers"], arch_after["layers"])):
        row = {"index": i, "type": lb["type"], "width_before": wb[i], "width_after": wa[i]}
        if "bottlenecks" in lb["args"]:
            row["depth_before"] = len(lb["args"]["bottlenecks"])
            row["depth_after"] = len(la["args"]["bottlenecks"])
        row["inner_before"], row["inner_after"] = _inner(lb), _inner(la)
        rows.append(row)
    return rows


def _inner(layer: dict) -> str:
    """Hidden widths of a block: C3 'cv1/cv2 m[hidden..]', SPP(F) hidden width."""
    a = layer["args"]
    if "bottlenecks" in a:
        return f"{a['c_cv1']}/{a['c_cv2']} m[{','.join(str(h) for h, _ in a['bottlenecks'])}]"
    if "c_hidden" in a:
        return str(a["c_hidden"])
    return ""


def format_table(report: dict) -> str:
    """Human-readable before/after table of a prune report."""
    lines = [f"{'#':>3} {'type':>8} {'out before':>12} {'out after':>12} {'depth':>6}  inner widths before -> after"]
    for r in report["layers"]:
        if r["type"] in ("Concat", "Upsample"):
            continue
        depth = f"{r['depth_before']}->{r['depth_after']}" if "depth_before" in r else ""
        wb = r["width_before"] if not isinstance(r["width_before"], list) else "/".join(map(str, r["width_before"]))
        wa = r["width_after"] if not isinstance(r["width_after"], list) else "/".join(map(str, r["width_after"]))
        inner = f"{r['inner_before']} -> {r['inner_after']}" if r["inner_before"] else ""
        lines.append(f"{r['index']:>3} {r['type']:>8} {wb!s:>12} {wa!s:>12} {depth:>6}  {inner}")
    b, a = report["before"], report["after"]
    lines.append("")
    lines.append(f"{'':>12} {'before':>14} {'after':>14} {'ratio':>8}")
    lines.append(f"{'params':>12} {b['params']:>14,} {a['params']:>14,} {a['params'] / b['params']:>8.3f}")
    lines.append(f"{'GFLOPs':>12} {b['gflops']:>14.3f} {a['gflops']:>14.3f} {a['gflops'] / b['gflops']:>8.3f}")
    removed = ", ".join(report["removed_bottlenecks"]) or "none"
    lines.append(f"GFLOPs at {report['settings']['imgsz']}; removed Bottlenecks: {removed}")
    return "\n".join(lines)


def format_latency(report: dict) -> str:
    """One paragraph for the command line: target, predicted, measured, dense, window, table."""
    lat = report["latency"]
    t = lat["table"]
    h, w = lat["imgsz"]
    lines = [
        f"latency ({lat['runtime']}, {lat['threads']} threads, {h}x{w}, batch 1): target {lat['target_ms']:.3f} ms, "
        f"predicted {lat['predicted_ms']:.3f} ms, measured {lat['measured_ms']:.3f} ms "
        f"({lat['measured_ms'] / lat['target_ms']:.1%} of the target; dense {lat['dense_ms']:.3f} ms)",
        f"window {lat['window_ms'][0]:.3f}-{lat['window_ms'][1]:.3f} ms: "
        + ("met" if lat["within"] else "NOT met")
        + f" after {len(lat['iterations'])} measurement(s); latency table: {t['measured']} block variants measured, "
        f"{t['cached']} from the cache" + (f" ({t['path']})" if t["path"] else ""),
    ]
    return "\n".join(lines)
