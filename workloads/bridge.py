"""The bridge between a quantised model and a `memsim.memory.MemoryImage`.

`ModelImage.of(model)` takes the integer codes of every quantised layer (or the named ones: a
placement puts different layers in different memories) and packs them into an image, one
region per layer named ``<layer>.weight``; `ModelImage.load(model, image)` makes the model's
forward pass use the weights of a (corrupted) copy of that image; `clear(model)` returns it to
its latent weights. Scales and zero points stay with the `ModelImage` (they are a handful of
floats per layer, kept in registers or a protected bank, not in the faulty array).

Storage encoding follows the quantiser unless overridden:

==================  ====================  ===============================================
quantiser           default encoding      other encodings
==================  ====================  ===============================================
sign (BNN)          ``binary`` (1 bit)    —
symmetric k-bit     ``twos_complement``   ``sign_magnitude``, ``offset_binary``
asymmetric k-bit    ``unsigned``          ``offset_binary`` (the same bits: q − 2^(k−1))
==================  ====================  ===============================================

The image holds exactly Σ weights × bits. A flipped bit can produce a code outside the
quantiser's emitted range but inside its load range (e.g. −2^(k−1) in two's complement); a
sign-magnitude "−0" loads as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import nn

from memsim.errors import MemsimError
from memsim.kernels.decode import decode_fields_
from memsim.memory.encoding import Encoding, decode_unchecked, resolve_encoding
from memsim.memory.image import MemoryImage, Region
from memsim.workloads.layers import QuantizedWeightLayer, iter_quantized_layers
from memsim.workloads.quant import WeightCodes

__all__ = ["BridgeError", "ModelImage", "WeightDecoder", "clear", "region_name"]

_ALLOWED: dict[str, tuple[Encoding, ...]] = {
    "sign": (Encoding.BINARY,),
    "symmetric": (Encoding.TWOS_COMPLEMENT, Encoding.SIGN_MAGNITUDE, Encoding.OFFSET_BINARY),
    "asymmetric": (Encoding.UNSIGNED, Encoding.OFFSET_BINARY),
}


class BridgeError(MemsimError):
    """A model and an image that do not fit together."""


def region_name(layer: str) -> str:
    return f"{layer}.weight" if layer else "weight"


@dataclass(frozen=True)
class _Entry:
    layer: str
    codes: WeightCodes
    encoding: Encoding
    shift: int  # stored value = code - shift (asymmetric codes stored as offset binary)


# Dequantisation tables larger than this (rows x 2^bits floats) are not built: a wide per-channel
# code would need more memory for its table than the weights themselves.
_MAX_TABLE_ENTRIES = 1 << 20


@dataclass(frozen=True)
class _Field:
    layer: str
    shape: tuple[int, ...]
    bit_offset: int
    bits: int
    table: np.ndarray  # (rows, 2^bits) float32: the weight of every stored pattern, per row
    row_elements: int


class WeightDecoder:
    """Float weights straight from the stored bits of images of one `ModelImage`'s layout.

    Every stored pattern of a layer's field is decoded and dequantised once, with the
    quantiser's own arithmetic, into a table (per output channel for per-channel scales); a
    read then costs one table lookup per weight (`memsim.kernels.decode`), with no unpack, code
    check or float arithmetic, and gives bit for bit the weights `ModelImage.load` would.
    Several images decode at once into stacked weights, one set per image.
    """

    def __init__(self, fields: Sequence[_Field], regions: tuple[Region, ...]) -> None:
        self._fields = tuple(fields)
        self._regions = regions

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(f.layer for f in self._fields)

    def stacked_weights(self, images: Sequence[MemoryImage]) -> dict[str, torch.Tensor]:
        """Per layer, the weights of every image stacked: shape (len(images), *weight shape)."""
        if not images:
            raise BridgeError("no images to decode")
        if any(image.regions != self._regions for image in images):
            raise BridgeError("the image's layout differs from this model image's")
        words = np.stack([image.words for image in images])
        out = {}
        for f in self._fields:
            buffer = np.empty((len(images), math.prod(f.shape)), dtype=np.float32)
            decode_fields_(words, f.bit_offset, f.bits, f.table, f.row_elements, buffer)
            out[f.layer] = torch.from_numpy(buffer).reshape((len(images), *f.shape))
        return out


class ModelImage:
    """The quantised weights of (some layers of) a model, packed into a `MemoryImage`."""

    def __init__(self, entries: Sequence[_Entry], image: MemoryImage) -> None:
        self._entries = {e.layer: e for e in entries}
        self.image = image

    @classmethod
    def of(cls, model: nn.Module, *, layers: Sequence[str] | None = None,
           encoding: str | Mapping[str, str] | None = None) -> ModelImage:
        """Pack the codes of the quantised `layers` (default: all, in module order).

        `encoding` overrides the storage encoding for every layer (a string) or per layer
        (a mapping from layer name); see the module docstring for what each quantiser allows.
        """
        available = dict(iter_quantized_layers(model))
        if not available:
            raise BridgeError("the model has no quantised layers (use memsim.workloads.ptq."
                              "quantize_model for a float model)")
        names = list(available) if layers is None else list(layers)
        unknown = [n for n in names if n not in available]
        if unknown:
            raise BridgeError(f"no quantised layer named {unknown[0]!r}; valid: "
                              f"{', '.join(available)}")
        if len(set(names)) != len(names):
            raise BridgeError(f"layers repeat: {names}")
        if isinstance(encoding, Mapping):
            extra = [k for k in encoding if k not in names]
            if extra:
                raise BridgeError(f"encoding given for {extra[0]!r}, which is not placed here")
        entries = []
        tensors = {}
        for name in names:
            codes = available[name].weight_codes()
            chosen = encoding.get(name) if isinstance(encoding, Mapping) else encoding
            enc = resolve_encoding(chosen if chosen is not None else codes.encoding)
            allowed = _ALLOWED[codes.scheme]
            if enc not in allowed:
                raise BridgeError(f"layer {name!r} ({codes.quantizer.describe()}) cannot be "
                                  f"stored as {enc.value}; allowed: "
                                  f"{', '.join(e.value for e in allowed)}")
            shift = (1 << (codes.bits - 1)) if (codes.scheme == "asymmetric"
                                                 and enc is Encoding.OFFSET_BINARY) else 0
            values = codes.codes.detach().cpu().numpy().astype(np.int64) - shift
            tensors[region_name(name)] = (values, enc, codes.bits)
            entries.append(_Entry(name, codes, enc, shift))
        return cls(entries, MemoryImage.pack(tensors))

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self._entries)

    @property
    def n_weights(self) -> int:
        return sum(int(e.codes.codes.numel()) for e in self._entries.values())

    def codes(self, layer: str) -> WeightCodes:
        """The codes, scale and zero point of `layer` when the image was made."""
        return self._entries[layer].codes

    def encoding(self, layer: str) -> Encoding:
        return self._entries[layer].encoding

    def weights_of(self, image: MemoryImage) -> dict[str, torch.Tensor]:
        """The float weights each layer gets from `image` (same layout as `self.image`)."""
        return {name: codes.dequantize(codes_tensor)
                for name, (codes, codes_tensor) in self._decode(image).items()}

    def _decode(self, image: MemoryImage) -> dict[str, tuple[WeightCodes, torch.Tensor]]:
        if image.regions != self.image.regions:
            raise BridgeError("the image's layout differs from this model image's")
        out = {}
        for name, e in self._entries.items():
            values = image.unpack(region_name(name))
            codes = torch.from_numpy(np.asarray(values, dtype=np.int64) + e.shift).to(
                torch.int32)
            out[name] = (e.codes, codes)
        return out

    @cached_property
    def decoder(self) -> WeightDecoder | None:
        """A `WeightDecoder` for images of this layout, or None where a layer's table cannot be
        built (weights not float32, a table over a million entries, or a stored pattern the
        quantiser would refuse to load)."""
        fields = []
        for name, e in self._entries.items():
            region = self.image.region(region_name(name))
            table = _table(e, region.bits)
            if table is None:
                return None
            rows = table.shape[0]
            n = math.prod(region.shape)
            fields.append(_Field(name, region.shape, region.bit_offset, region.bits, table,
                                 max(1, n // rows)))
        return WeightDecoder(fields, self.image.regions)

    def load(self, model: nn.Module, image: MemoryImage | None = None) -> None:
        """Make `model` run on the weights in `image` (default: the fault-free image)."""
        decoded = self._decode(image if image is not None else self.image)
        layers = dict(iter_quantized_layers(model))
        missing = [n for n in decoded if n not in layers]
        if missing:
            raise BridgeError(f"the model has no quantised layer {missing[0]!r}")
        for name, (codes, tensor) in decoded.items():
            layer: QuantizedWeightLayer = layers[name]
            layer.load_weight_codes(tensor, codes.scale, codes.zero_point)

    def load_stacked(self, model: nn.Module, images: Sequence[MemoryImage]) -> int:
        """Make `model` run one forward pass on the weights of all `images` at once (stacked
        weights, see `QuantizedWeightLayer.load_stacked_weight`); returns the number of images.
        Raises `BridgeError` if a layer has no `decoder` table."""
        decoder = self.decoder
        if decoder is None:
            raise BridgeError("this model image has no decoding table (see ModelImage.decoder)")
        layers = dict(iter_quantized_layers(model))
        missing = [n for n in decoder.layers if n not in layers]
        if missing:
            raise BridgeError(f"the model has no quantised layer {missing[0]!r}")
        for name, weights in decoder.stacked_weights(images).items():
            layers[name].load_stacked_weight(weights)
        return len(images)

    @contextmanager
    def loaded(self, model: nn.Module, image: MemoryImage | None = None) -> Iterator[nn.Module]:
        """`load` for the duration of a block, then back to the latent weights."""
        self.load(model, image)
        try:
            yield model
        finally:
            clear(model, self.layers)

    def __repr__(self) -> str:
        return (f"ModelImage({len(self._entries)} layers, {self.n_weights} weights, "
                f"{self.image.n_bits} bits)")


def _table(entry: _Entry, bits: int) -> np.ndarray | None:
    codes = entry.codes
    rows = int(codes.scale.numel())
    if codes.scale.dtype != torch.float32 or rows * (1 << bits) > _MAX_TABLE_ENTRIES:
        return None
    if rows > 1 and (codes.codes.dim() == 0 or codes.codes.shape[0] != rows):
        return None  # per-channel scales run along axis 0 of the weight
    patterns = np.arange(1 << bits, dtype=np.uint32)
    values = np.asarray(decode_unchecked(patterns, entry.encoding, bits), dtype=np.int64)
    values = values + entry.shift
    lo, hi = codes.quantizer.load_range
    if ((values < lo) | (values > hi)).any() or (
            codes.scheme == "sign" and (values == 0).any()):
        return None
    grid = torch.from_numpy(values).to(torch.int32).expand(rows, -1).contiguous()
    with torch.no_grad():
        table = codes.quantizer.dequantize(grid, codes.scale, codes.zero_point)
    return np.ascontiguousarray(table.numpy(), dtype=np.float32)


def clear(model: nn.Module, layers: Sequence[str] | None = None) -> None:
    """Return the named quantised layers (default: all) to their latent weights."""
    wanted = None if layers is None else set(layers)
    for name, layer in iter_quantized_layers(model):
        if wanted is None or name in wanted:
            layer.clear_weight_codes()
