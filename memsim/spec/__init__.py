"""Device specs: frozen dataclasses loaded from YAML and validated (no numerics here)."""

from memsim.spec.device import DeviceSpec, KnobRole, KnobSpec, Technology
from memsim.spec.fields import Param, Provenance
from memsim.spec.loader import builtin_device_files, load_device_spec

__all__ = [
    "DeviceSpec",
    "KnobRole",
    "KnobSpec",
    "Param",
    "Provenance",
    "Technology",
    "builtin_device_files",
    "load_device_spec",
]
