"""Post-training quantisation (PTQ): bring your own pretrained torch model.

`quantize_model` copies a model and replaces each ``nn.Linear`` and ``nn.Conv2d`` by a
`QuantizedLinear`/`QuantizedConv2d` holding the same float weights as latent weights (and the
same bias, float). The copy then quantises those weights to k-bit codes with scales on every
forward pass and exposes them through the same interface as a quantisation-aware trained
model (`iter_quantized_layers`, `weight_codes`, `load_weight_codes`), so the bridge to memory
images treats both alike. No data and no retraining: scales come from the weights alone
(min/max), per output channel by default since that loses least accuracy without calibration.

Only modules whose type is exactly ``nn.Linear`` or ``nn.Conv2d`` are replaced; subclasses
(e.g. the output projection inside ``nn.MultiheadAttention``, whose parent reads ``.weight``
directly rather than calling the module) and other layer types stay float.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TypeVar, cast

from torch import nn

from memsim.workloads.layers import QuantizedConv2d, QuantizedLinear
from memsim.workloads.quant import QuantizationError, WeightQuantizer, make_weight_quantizer

__all__ = ["quantize_model", "quantized_copy_of_layer"]

M = TypeVar("M", bound=nn.Module)


def quantized_copy_of_layer(module: nn.Module,
                            quantizer: WeightQuantizer) -> QuantizedLinear | QuantizedConv2d:
    """A quantised layer with the configuration, weights, bias and mode of ``module``."""
    layer: QuantizedLinear | QuantizedConv2d
    if type(module) is nn.Linear:
        layer = QuantizedLinear(module.in_features, module.out_features, module.bias is not None,
                                weight_quantizer=quantizer, device=module.weight.device,
                                dtype=module.weight.dtype)
    elif type(module) is nn.Conv2d:
        if isinstance(module.padding, str):
            padding: str | tuple[int, int] = module.padding
        else:
            padding = (module.padding[0], module.padding[1])
        layer = QuantizedConv2d(
            module.in_channels, module.out_channels,
            (module.kernel_size[0], module.kernel_size[1]),
            (module.stride[0], module.stride[1]), padding,
            (module.dilation[0], module.dilation[1]), module.groups, module.bias is not None,
            module.padding_mode, weight_quantizer=quantizer, device=module.weight.device,
            dtype=module.weight.dtype)
    else:
        raise QuantizationError(
            f"PTQ replaces nn.Linear and nn.Conv2d only, not {type(module).__name__}")
    # a learned step is the layer's own: initialised from the weights copied in
    missing, unexpected = layer.load_state_dict(module.state_dict(), strict=False)
    if unexpected or set(missing) - {"weight_step"}:
        raise QuantizationError(f"cannot copy {type(module).__name__}: missing {missing}, "
                                f"unexpected {unexpected}")
    layer.reset_weight_step()
    layer.weight.requires_grad_(module.weight.requires_grad)
    if module.bias is not None and layer.bias is not None:
        layer.bias.requires_grad_(module.bias.requires_grad)
    layer.train(module.training)
    return layer


def quantize_model(model: M, *, weight_bits: int = 8, weight_scheme: str = "symmetric",
                   per_channel: bool | None = None, weight_clip: float | None = None,
                   exclude: Iterable[str] = ()) -> M:
    """A copy of ``model`` whose Linear and Conv2d weights are ``weight_bits``-bit codes.

    ``weight_bits``, ``weight_scheme``, ``per_channel`` and ``weight_clip`` mean what they mean
    in `memsim.workloads.models.build_model` (1 = sign), except that ``per_channel`` defaults to
    per-channel scales for k ≥ 2 bits (None). ``exclude`` names modules (as in
    ``named_modules``) to keep float (a shared module stays float under all its names);
    naming a module that is not a replaceable layer is an error. The original model is not
    changed; a bare ``nn.Linear``/``nn.Conv2d`` comes back as its quantised copy.
    """
    if per_channel is None:
        per_channel = weight_bits != 1
    quantizer = make_weight_quantizer(weight_bits, scheme=weight_scheme,
                                      per_channel=per_channel, clip=weight_clip)
    result = copy.deepcopy(model)
    # Every (name, module) pair, shared modules under each of their names, so that a layer
    # registered twice is replaced by one quantised layer in both places.
    targets = [(name, module) for name, module in result.named_modules(remove_duplicate=False)
               if type(module) in (nn.Linear, nn.Conv2d)]
    names = {name for name, _ in targets}
    skip = set(exclude)
    unknown = sorted(skip - names)
    if unknown:
        valid = ", ".join(repr(n) for n in sorted(names)) or "(none)"
        raise QuantizationError(
            f"exclude names {unknown[0]!r}, which is not a Linear or Conv2d module of the "
            f"model; valid: {valid}")
    skipped = {id(module) for name, module in targets if name in skip}
    replacements: dict[int, nn.Module] = {}
    for name, module in targets:
        if id(module) in skipped:
            continue
        if id(module) not in replacements:
            replacements[id(module)] = quantized_copy_of_layer(module, quantizer)
        if not name:
            return cast(M, replacements[id(module)])
        parent_name, _, child = name.rpartition(".")
        setattr(result.get_submodule(parent_name), child, replacements[id(module)])
    return result
