"""memsim: an approximate-memory hardware simulator for quantised and binarised networks."""

from memsim.errors import KnobError, MemsimError, SpecError, UnknownDeviceError
from memsim.physics.device import Device, MechanismFigures, OperatingPoint, load_device
from memsim.spec.loader import builtin_device_files

__version__ = "0.1.0"

__all__ = [
    "Device",
    "KnobError",
    "MechanismFigures",
    "MemsimError",
    "OperatingPoint",
    "SpecError",
    "UnknownDeviceError",
    "__version__",
    "builtin_device_files",
    "load_device",
]
