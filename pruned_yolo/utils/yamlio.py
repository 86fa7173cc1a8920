"""YAML files given as a path or as the name of one shipped with the package, read with one
clear error line for each way they can be wrong (hyps, model configs and data configs all
load through here)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import ConfigError, PrunedYoloError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def shipped_dir(package: str, folder: str) -> Traversable:
    """The folder of YAML files shipped inside `package` (e.g. "pruned_yolo.training", "hyps")."""
    return resources.files(package).joinpath(folder)


def shipped_names(package_dir: Traversable) -> list[str]:
    """Sorted names (without `.yaml`) of the YAML files in a shipped folder."""
    return sorted(p.name[: -len(".yaml")] for p in package_dir.iterdir() if p.name.endswith(".yaml"))


def resolve_yaml(
    path_or_name: str | Path,
    package_dir: Traversable | None = None,
    what: str = "YAML",
    *,
    error: type[PrunedYoloError] = ConfigError,
) -> Path:
    """The file `path_or_name` names: an existing file, else (with `package_dir`) the shipped
    YAML of that name (`yolov5s`, `finetune.yaml`, also `any/dir/finetune.yaml`)."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    if package_dir is None:
        raise error(f"{what} not found: {path}")
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    names = shipped_names(package_dir)
    if name not in names:
        kind = what.split()[-1]  # "model config" -> "a shipped config"
        raise error(f"{what} '{path_or_name}' is neither a file nor a shipped {kind} ({', '.join(names)})")
    return Path(str(package_dir.joinpath(f"{name}.yaml")))


def load_yaml(
    path_or_name: str | Path,
    package_dir: Traversable | None = None,
    what: str = "YAML",
    *,
    error: type[PrunedYoloError] = ConfigError,
    expected: str = "a mapping",
) -> dict[str, Any]:
    """The mapping in a YAML file given by path, or by shipped name when `package_dir` is given.

    `what` names the file in the messages ("hyp", "model config", "data YAML"; its last word
    also names the shipped ones), `error` is the exception raised and `expected` describes the
    mapping for the not-a-mapping message. Every failure is one line: not found (listing the
    shipped names), unreadable, not UTF-8, malformed YAML, not a mapping."""
    path = resolve_yaml(path_or_name, package_dir, what, error=error)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not a UTF-8 text file (byte {e.start}: {e.reason}), not a {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{path}: malformed YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} must be {expected}")
    return data
