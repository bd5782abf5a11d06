"""memsim: an approximate-memory hardware simulator for quantised and binarised networks."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memsim.errors import KnobError, MemsimError, RunFailure, SpecError, UnknownDeviceError

if TYPE_CHECKING:
    from memsim.physics.device import Device, MechanismFigures, OperatingPoint, load_device
    from memsim.spec.loader import builtin_device_files

__version__ = "0.1.0"

__all__ = [
    "Device",
    "KnobError",
    "MechanismFigures",
    "MemsimError",
    "OperatingPoint",
    "RunFailure",
    "SpecError",
    "UnknownDeviceError",
    "__version__",
    "builtin_device_files",
    "load_device",
]

# Imported on first use (PEP 562): the physics pulls in numpy, scipy and numba, which
# `memsim --help` and the error classes do not need.
_LAZY = {
    "Device": "memsim.physics.device",
    "MechanismFigures": "memsim.physics.device",
    "OperatingPoint": "memsim.physics.device",
    "load_device": "memsim.physics.device",
    "builtin_device_files": "memsim.spec.loader",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
