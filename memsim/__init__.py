"""memsim: an approximate-memory hardware simulator for quantised and binarised networks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memsim._lazy import lazy_attributes
from memsim.errors import KnobError, MemsimError, RunFailure, SpecError, UnknownDeviceError

if TYPE_CHECKING:
    from memsim.experiments.runner import run_experiment
    from memsim.experiments.table import results
    from memsim.physics.device import Device, MechanismFigures, OperatingPoint, load_device
    from memsim.spec.loader import builtin_device_files, load_device_document

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
    "load_device_document",
    "results",
    "run_experiment",
]

# Imported on first use (PEP 562): the physics pulls in numpy, scipy and numba, which
# `memsim --help` and the error classes do not need.
_LAZY = {
    "Device": "memsim.physics.device",
    "MechanismFigures": "memsim.physics.device",
    "OperatingPoint": "memsim.physics.device",
    "load_device": "memsim.physics.device",
    "builtin_device_files": "memsim.spec.loader",
    "load_device_document": "memsim.spec.loader",
    "run_experiment": "memsim.experiments.runner",
    "results": "memsim.experiments.table",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
