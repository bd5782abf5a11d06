"""Deployments: how a network's weights live in a memory, which decides what energy its knobs
trade.

A sweep's energy per inference is read, static and refresh power and programming, weighted by
how the weights are used: a write-pulse knob saves nothing for weights programmed once, and a
refresh-interval knob saves almost nothing when inferences follow each other every
microsecond. A deployment states that use; every config names one (a preset, or `custom` with
every field given), and the report prints it first.

- `resident`: the weights stay in the memory, read every inference, programmed once per
  `inferences_per_write` inferences;
- `streamed`: the weights pass through the memory (a buffer) and are written and read every
  inference;
- `reprogrammed`: resident, but rewritten every `reprogram_interval_s` seconds (against drift
  or retention loss), i.e. once per `inference_rate_hz · reprogram_interval_s` inferences.

Static and refresh power are charged over the time per inference, `1 / inference_rate_hz`:
the memory holds the weights powered between inferences.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from memsim.spec.fields import Node, nearest_hint

__all__ = [
    "CUSTOM_PRESET",
    "DEPLOYMENT_PRESETS",
    "Deployment",
    "WeightResidence",
    "parse_deployment",
]


class WeightResidence(StrEnum):
    RESIDENT = "resident"
    STREAMED = "streamed"
    REPROGRAMMED = "reprogrammed"


@dataclass(frozen=True)
class Deployment:
    """How the weights live in the memory under test (and in the placement's other memories).

    Attributes:
        preset: the preset the fields start from (`custom`: none, every field given).
        weights: resident, streamed or reprogrammed (see the module docstring).
        inference_rate_hz: inferences per second; static and refresh power are charged over
            1 / rate per inference.
        reads_per_inference: how often each stored weight bit is read per inference.
        inferences_per_write: resident weights: inferences served by one programming.
        reprogram_interval_s: reprogrammed weights: seconds between two programmings.
        capacity_mib: capacity of the memory under test in MiB, for static and refresh power
            (None: exactly the bits it stores).
        description: what the preset models, for the report (empty once a field differs).
    """

    preset: str
    weights: WeightResidence
    inference_rate_hz: float
    reads_per_inference: float = 1.0
    inferences_per_write: float | None = None
    reprogram_interval_s: float | None = None
    capacity_mib: float | None = None
    description: str = ""
    changed: tuple[str, ...] = ()
    """The preset's fields this deployment overrides (its description then no longer
    applies)."""

    @property
    def label(self) -> str:
        """`always-on`, or `always-on with inference_rate_hz changed`."""
        if not self.changed:
            return self.preset
        return f"{self.preset} with {', '.join(self.changed)} changed"

    @property
    def seconds_per_inference(self) -> float:
        return 1.0 / self.inference_rate_hz

    @property
    def writes_per_inference(self) -> float:
        """Programmings of every stored bit per inference."""
        if self.weights is WeightResidence.STREAMED:
            return 1.0
        if self.weights is WeightResidence.REPROGRAMMED:
            assert self.reprogram_interval_s is not None
            return 1.0 / (self.inference_rate_hz * self.reprogram_interval_s)
        assert self.inferences_per_write is not None
        return 1.0 / self.inferences_per_write

    @property
    def amortised_inferences_per_write(self) -> float:
        """Inferences served by one programming, whatever the mode (1 when streamed)."""
        return 1.0 / self.writes_per_inference

    def summary(self) -> str:
        """One sentence: what is charged per inference."""
        rate = _fmt(self.inference_rate_hz)
        period = _fmt(self.seconds_per_inference)
        reads = ("read once" if self.reads_per_inference == 1.0
                 else f"read {_fmt(self.reads_per_inference)} times")
        if self.weights is WeightResidence.STREAMED:
            writes = "written into the memory for every inference"
        elif self.weights is WeightResidence.REPROGRAMMED:
            writes = (f"reprogrammed every {_fmt(self.reprogram_interval_s or 0.0)} s (once per "
                      f"{_fmt(self.amortised_inferences_per_write)} inferences)")
        else:
            writes = f"programmed once per {_fmt(self.amortised_inferences_per_write)} inferences"
        capacity = ("the bits stored" if self.capacity_mib is None
                    else f"{_fmt(self.capacity_mib)} MiB")
        plural = "" if self.inference_rate_hz == 1 else "s"
        return (f"weights {self.weights.value}, {writes}, {reads} per inference; "
                f"{rate} inference{plural}/s, so static and refresh power are charged over "
                f"{period} s per inference; capacity: {capacity}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"preset": self.preset, "weights": self.weights.value,
                               "inference_rate_hz": self.inference_rate_hz,
                               "reads_per_inference": self.reads_per_inference}
        for name in ("inferences_per_write", "reprogram_interval_s", "capacity_mib"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


CUSTOM_PRESET = "custom"

DEPLOYMENT_PRESETS: Mapping[str, Deployment] = {
    "always-on": Deployment(
        "always-on", WeightResidence.RESIDENT, inference_rate_hz=1.0,
        inferences_per_write=1.0e6,
        description="an always-on sensor node classifying once a second: the weights stay "
                    "powered (and refreshed) between inferences, so static and refresh power "
                    "dominate; one programming serves a million inferences (about 12 days)"),
    "throughput": Deployment(
        "throughput", WeightResidence.RESIDENT, inference_rate_hz=1.0e4,
        inferences_per_write=1.0e9,
        description="an accelerator busy at 10 000 inferences a second with resident "
                    "weights: reads dominate; one programming serves a billion inferences"),
    "streamed": Deployment(
        "streamed", WeightResidence.STREAMED, inference_rate_hz=1.0e4,
        description="a model larger than its on-chip buffer, its weights streamed through the "
                    "buffer at 10 000 inferences a second: every inference writes and reads "
                    "every weight bit, so write energy counts in full"),
    "reprogrammed-hourly": Deployment(
        "reprogrammed-hourly", WeightResidence.REPROGRAMMED, inference_rate_hz=1.0,
        reprogram_interval_s=3600.0,
        description="resident non-volatile weights rewritten every hour against drift and "
                    "retention loss, at one inference a second"),
}


def _fmt(x: float) -> str:
    return f"{x:g}"


def parse_deployment(n: Node) -> Deployment:
    """Read a `deployment:` section: a preset name, or a mapping with `preset` and overrides
    (`preset: custom` needs `weights` and `inference_rate_hz`)."""
    if isinstance(n.value, str):
        n = Node({"preset": n.value}, n.file, n.path, n.origin)
    names = [*DEPLOYMENT_PRESETS, CUSTOM_PRESET]
    with n.fields() as f:
        preset = f.required("preset", Node.string)
        if preset not in names:
            f.problems.append(n.child("preset", preset).problem(
                f"expected one of {', '.join(names)}, got {preset!r}"
                f"{nearest_hint(preset, names)}"))
            f.check()
        base = DEPLOYMENT_PRESETS.get(preset)
        custom = base is None
        read_weights = (lambda m: m.enum(WeightResidence))  # noqa: E731
        positive = (lambda m: m.number_in(0.0, None, low_open=True))  # noqa: E731
        if custom:
            weights = f.collect_required("weights", read_weights, WeightResidence.RESIDENT)
            rate = f.collect_required("inference_rate_hz", positive, 1.0)
            base = Deployment(CUSTOM_PRESET, weights, rate)
        else:
            assert base is not None
            weights = f.collect("weights", read_weights, base.weights)
            rate = f.collect("inference_rate_hz", positive, base.inference_rate_hz)
        reads = f.collect("reads_per_inference", lambda m: m.number_in(0.0, None),
                          base.reads_per_inference)
        per_write = f.collect("inferences_per_write", lambda m: m.number_in(1.0, None),
                              base.inferences_per_write)
        interval = f.collect("reprogram_interval_s", positive, base.reprogram_interval_s)
        capacity = f.collect("capacity_mib", positive, base.capacity_mib)
        f.check()
        given = n.value if isinstance(n.value, Mapping) else {}
        if weights is not WeightResidence.RESIDENT and "inferences_per_write" in given:
            f.problems.append(n.child("inferences_per_write", per_write).problem(
                f"only resident weights have it; {weights.value} weights are written "
                + ("every inference" if weights is WeightResidence.STREAMED
                   else "every reprogram_interval_s")))
        if weights is not WeightResidence.REPROGRAMMED and "reprogram_interval_s" in given:
            f.problems.append(n.child("reprogram_interval_s", interval).problem(
                "only reprogrammed weights have it (weights: reprogrammed)"))
        if weights is WeightResidence.RESIDENT and per_write is None:
            f.problems.append(n.child("inferences_per_write", None).problem(
                "resident weights need it: inferences served by one programming (a number "
                ">= 1; a large one such as 1.0e12 for weights programmed once)"))
        if weights is WeightResidence.REPROGRAMMED and interval is None:
            f.problems.append(n.child("reprogram_interval_s", None).problem(
                "reprogrammed weights need it: seconds between two programmings"))
        f.check()
    out = replace(base, weights=weights, inference_rate_hz=rate, reads_per_inference=reads,
                  inferences_per_write=per_write if weights is WeightResidence.RESIDENT
                  else None,
                  reprogram_interval_s=interval if weights is WeightResidence.REPROGRAMMED
                  else None,
                  capacity_mib=capacity)
    if not math.isfinite(out.seconds_per_inference):
        raise n.child("inference_rate_hz", rate).fail(
            f"expected a rate whose inverse is finite, got {rate:g}")
    if not math.isfinite(out.writes_per_inference):
        raise n.fail("the deployment writes an infinite number of times per inference")
    if custom:
        return out
    changed = tuple(name for name in ("weights", "inference_rate_hz", "reads_per_inference",
                                      "inferences_per_write", "reprogram_interval_s",
                                      "capacity_mib")
                    if getattr(out, name) != getattr(base, name))
    return replace(out, changed=changed, description="" if changed else base.description)

