"""Bit-exact memory images, chips that store them, and protection (ECC, interleaving, MSBs)."""

from memsim.memory.chip import Chip, ChipError, ReadResult
from memsim.memory.encoding import (
    Encoding,
    EncodingError,
    check_bits,
    decode,
    encode,
    resolve_encoding,
    valid_bits,
    value_range,
)
from memsim.memory.image import ImageError, MemoryImage, Region
from memsim.memory.protection import (
    EccCounts,
    ProtectedImage,
    ProtectedReadResult,
    Protection,
    ProtectionError,
    ProtectionOverhead,
    protect,
)
from memsim.memory.replay import (
    FaultMapError,
    FaultMapFileError,
    FaultMaps,
    MeasuredChip,
    NestingViolation,
    ReplayError,
)

__all__ = [
    "Chip",
    "ChipError",
    "EccCounts",
    "Encoding",
    "EncodingError",
    "FaultMapError",
    "FaultMapFileError",
    "FaultMaps",
    "ImageError",
    "MeasuredChip",
    "MemoryImage",
    "NestingViolation",
    "ProtectedImage",
    "ProtectedReadResult",
    "Protection",
    "ProtectionError",
    "ProtectionOverhead",
    "ReadResult",
    "Region",
    "ReplayError",
    "check_bits",
    "decode",
    "encode",
    "protect",
    "resolve_encoding",
    "valid_bits",
    "value_range",
]
