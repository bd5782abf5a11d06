"""Device specs: frozen dataclasses loaded from YAML and validated (no numerics here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memsim._lazy import lazy_attributes

if TYPE_CHECKING:
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

# Imported on first use (PEP 562): `memsim.spec.names` serves the command line's choices
# without loading YAML and the device schema.
_LAZY = {
    "DeviceSpec": "memsim.spec.device",
    "KnobRole": "memsim.spec.device",
    "KnobSpec": "memsim.spec.device",
    "Technology": "memsim.spec.device",
    "Param": "memsim.spec.fields",
    "Provenance": "memsim.spec.fields",
    "builtin_device_files": "memsim.spec.loader",
    "load_device_spec": "memsim.spec.loader",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
