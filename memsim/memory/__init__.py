"""Bit-exact memory images: encodings of weight values and packed words with a region table."""

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

__all__ = [
    "Encoding",
    "EncodingError",
    "ImageError",
    "MemoryImage",
    "Region",
    "check_bits",
    "decode",
    "encode",
    "resolve_encoding",
    "valid_bits",
    "value_range",
]
