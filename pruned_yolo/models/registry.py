"""Name -> module class registry used by the YAML parser and the architecture builder.

YAML files name modules by string; we resolve those strings here and never `eval` them.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError

_MODULES: dict[str, type] = {}


def register_module(*names: str) -> Callable[[type], type]:
    """Class decorator: register a module under its class name and optional aliases."""

    def wrap(cls: type) -> type:
        for name in (cls.__name__, *names):
            _MODULES[name] = cls
        return cls

    return wrap


def get_module(name: str) -> type:
    """Return the registered module class for `name` (e.g. "C3" or "nn.Upsample")."""
    try:
        return _MODULES[name]
    except KeyError:
        known = ", ".join(sorted(k for k in _MODULES if "." not in k))
        raise ConfigError(f"unknown module '{name}' (known modules: {known})") from None


def registered_modules() -> list[str]:
    return sorted(_MODULES)
