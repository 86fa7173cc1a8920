"""Model summary: parameters, GFLOPs and the explicit widths of every layer."""

from __future__ import annotations

from torch import nn

from ..utils.torch_utils import count_flops, count_params


def describe_widths(layer_type: str, args: dict) -> str:
    """Compact one-line description of a layer's widths, e.g. 'C3 64->64 cv1 32 cv2 32 m[32/32]'."""
    if layer_type in ("Conv", "Focus"):
        return f"{args['c1']}->{args['c2']} k{args['k']} s{args['s']}"
    if layer_type in ("C3", "BottleneckCSP"):
        m = " ".join(f"{h}/{o}" for h, o in args["bottlenecks"])
        extra = f" cv3 {args['c_cv3']}" if "c_cv3" in args else ""
        sc = "" if args["shortcut"] else " no-shortcut"
        return f"{args['c1']}->{args['c2']} cv1 {args['c_cv1']} cv2 {args['c_cv2']}{extra} m[{m}]{sc}"
    if layer_type == "Bottleneck":
        return f"{args['c1']}->{args['c_hidden']}->{args['c2']}"
    if layer_type in ("SPP", "SPPF"):
        return f"{args['c1']}->{args['c_hidden']}->{args['c2']} k{args['k']}"
    if layer_type == "Detect":
        return f"ch {args['ch']} nc {args['nc']}"
    if layer_type == "Upsample":
        return f"x{args['scale_factor']} {args['mode']}"
    return ""


def model_info(model: nn.Module, imgsz: int = 640) -> dict:
    """{'params', 'gflops', 'imgsz', 'layers': [{index, from, type, params, gflops, args, widths}]}."""
    total, per_layer = count_flops(model, imgsz, per_module=True)
    arch = model.arch()
    layers = []
    for i, (m, spec) in enumerate(zip(model.model, arch["layers"])):
        layers.append(
            {
                "index": i,
                "from": spec["from"],
                "type": spec["type"],
                "params": count_params(m),
                "gflops": per_layer.get(i, 0) / 1e9,
                "args": spec["args"],
                "widths": describe_widths(spec["type"], spec["args"]),
            }
        )
    return {"params": count_params(model), "gflops": total / 1e9, "imgsz": imgsz, "layers": layers}


def format_info(info: dict, name: str = "model") -> str:
    lines = [f"{'#':>3} {'from':>12} {'type':>14} {'params':>10} {'GFLOPs':>8}  widths"]
    for layer in info["layers"]:
        lines.append(
            f"{layer['index']:>3} {str(layer['from']):>12} {layer['type']:>14} {layer['params']:>10,} "
            f"{layer['gflops']:>8.2f}  {layer['widths']}"
        )
    lines.append(
        f"{name}: {len(info['layers'])} layers, {info['params']:,} parameters, "
        f"{info['gflops']:.2f} GFLOPs at {info['imgsz']}"
    )
    return "\n".join(lines)
