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

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from memsim.errors import MemsimError
from memsim.memory.encoding import Encoding, resolve_encoding
from memsim.memory.image import MemoryImage
from memsim.workloads.layers import QuantizedWeightLayer, iter_quantized_layers
from memsim.workloads.quant import WeightCodes

__all__ = ["BridgeError", "ModelImage", "clear", "region_name"]

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


def clear(model: nn.Module, layers: Sequence[str] | None = None) -> None:
    """Return the named quantised layers (default: all) to their latent weights."""
    wanted = None if layers is None else set(layers)
    for name, layer in iter_quantized_layers(model):
        if wanted is None or name in wanted:
            layer.clear_weight_codes()
