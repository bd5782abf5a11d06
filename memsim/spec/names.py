"""Names, defaults and notations that several layers and the command line share, defined once
here: the spec layer validates against them, the memory layer uses the enums, the CLI offers
them as choices without importing anything heavy, the report writes knobs the same way."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = [
    "DEFAULT_BUDGETS_POINTS",
    "DEFAULT_READS_PER_PASS",
    "ECC_SCHEMES",
    "TORCH_DEVICES",
    "UNCORRECTABLE_POLICIES",
    "EccScheme",
    "UncorrectablePolicy",
    "format_knobs",
]


class EccScheme(StrEnum):
    """Error-correcting codes: none, or SEC-DED with 8 check bits per 64 data bits."""

    NONE = "none"
    SECDED_72_64 = "secded-72-64"


class UncorrectablePolicy(StrEnum):
    """What a decoder does with a word it detects as wrong but cannot correct."""

    LEAVE = "leave"
    ZERO = "zero"


ECC_SCHEMES: tuple[str, ...] = tuple(e.value for e in EccScheme)
UNCORRECTABLE_POLICIES: tuple[str, ...] = tuple(p.value for p in UncorrectablePolicy)

DEFAULT_BUDGETS_POINTS: tuple[float, ...] = (1.0, 2.0)
"""Accuracy budgets in percentage points below clean accuracy, when a config names none."""


DEFAULT_READS_PER_PASS = 16
"""Most corrupted weight sets a sweep evaluates in one batched forward pass (fewer where the
activations would pass `memsim.experiments.evaluate.ACTIVATION_BUDGET_BYTES`)."""


TORCH_DEVICES: tuple[str, ...] = ("cpu", "cuda", "auto")
"""Where an evaluation's forward passes may run (``auto``: CUDA when torch sees a device)."""


def format_knobs(values: Mapping[str, float], empty: str = "nominal") -> str:
    """`v_rel=0.86, temperature_c=85` (`empty` when there are none)."""
    return ", ".join(f"{k}={v:g}" for k, v in values.items()) or empty
