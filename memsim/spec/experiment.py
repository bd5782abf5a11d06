"""Experiment configs (`configs/*.yaml`): frozen dataclasses read from YAML, validated like
device files (every problem one line naming the file and the field path, all reported together).

An experiment names the models (a training config, a checkpoint, or a user's own torch model
quantised after training), the test data, the devices with the control-knob values to sweep,
the environment scenarios, where the layers live (placements), the protections of the memory
under test, the number of chips (fixed, or adaptive to a target interval) and of trials, the
deployment that energy is counted for (`memsim.spec.deployment`), the reference memory that
savings are stated against, and the seed. `configs/README.md` documents every field with an
example.

Relative paths (checkpoints, weight files, device files, data directories, training configs)
are relative to the config file. Device knobs are checked against the device files here:
swept knobs must be control knobs, scenario knobs environment knobs, all values inside the
knobs' ranges. Data set and model names are checked by the workloads layer that builds them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from memsim.errors import MemsimError, SpecError, SpecProblem, UnknownDeviceError
from memsim.spec.deployment import DEPLOYMENT_PRESETS, Deployment, parse_deployment
from memsim.spec.device import DeviceSpec, KnobRole, parse_device
from memsim.spec.fields import Node, entries, nearest_hint, printable, safe_name
from memsim.spec.loader import load_document, read_yaml, resolve_device_path, resolve_extends
from memsim.spec.names import DEFAULT_BUDGETS_POINTS, ECC_SCHEMES, UNCORRECTABLE_POLICIES
from memsim.spec.training import (
    QuantScheme,
    TrainSpec,
    apply_overrides,
    load_training,
    parse_training,
)

__all__ = [
    "DEFAULT_BUDGETS_POINTS",
    "ECC_SCHEMES",
    "MEMORY_DEVICE",
    "SCHEMA_VERSION",
    "UNCORRECTABLE_POLICIES",
    "UNDER_TEST",
    "ChipRule",
    "DataSelection",
    "DeviceEntry",
    "DeviceRef",
    "ExperimentSpec",
    "FixedMemory",
    "ModelEntry",
    "ModelSourceKind",
    "PlacementSpec",
    "ProtectionSpec",
    "PtqSpec",
    "ReferenceMemory",
    "Scenario",
    "TorchModelSpec",
    "UnknownConfigError",
    "apply_config_overrides",
    "builtin_config_files",
    "config_dir",
    "load_experiment",
    "parse_budgets",
    "parse_experiment",
    "parse_reference",
    "resolve_config_path",
]

SCHEMA_VERSION = 1
MEMORY_DEVICE = "<memory>"
"""The file of a device given in memory (a document or a `Device`, from Python)."""
UNDER_TEST = "under-test"
"""The name of the memory that holds the swept device (seeds its chips)."""
NOMINAL_SCENARIO = "nominal"
_BUILDER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
_NO_SWEEP: tuple[tuple[str, tuple[float, ...]], ...] = ()
_NO_NAMES: tuple[str, ...] = ()
_PLACEHOLDER_DEPLOYMENT = DEPLOYMENT_PRESETS["always-on"]


def _no_knobs() -> dict[str, float]:
    return {}


class UnknownConfigError(MemsimError):
    """An experiment config name that is neither built in nor a readable file."""


# -- the built-in configs -------------------------------------------------------------------


def config_dir() -> Path:
    """The folder of built-in experiment configs (inside the installed package, or the
    repository's `configs/`)."""
    # A non-editable install puts configs/ at memsim/builtin_configs (see pyproject.toml).
    installed = Path(__file__).resolve().parents[1] / "builtin_configs"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "configs"


def builtin_config_files() -> dict[str, Path]:
    """Built-in config names (file stems) and their files, sorted by name."""
    return {p.stem: p for p in sorted(config_dir().glob("*.yaml"))}


def resolve_config_path(name_or_path: str | Path) -> Path:
    """The file of a built-in config name (`quickstart`) or of a path to a YAML file; an
    existing file wins over a built-in of the same name."""
    text = str(name_or_path)
    path = Path(text)
    if path.is_file():
        return path
    builtin = builtin_config_files()
    if text in builtin:
        return builtin[text]
    if path.suffix in (".yaml", ".yml") or "/" in text:
        raise UnknownConfigError(f"{printable(text)}: no such file")
    raise UnknownConfigError(
        f"unknown experiment config {text!r}{nearest_hint(text, list(builtin))}; built-in "
        f"configs: {', '.join(builtin) or 'none'} (or give a path to a YAML file)")


# -- the spec -------------------------------------------------------------------------------


class ModelSourceKind(StrEnum):
    TRAIN = "train"
    CHECKPOINT = "checkpoint"
    TORCH = "torch_model"
    MODULE = "module"


@dataclass(frozen=True)
class PtqSpec:
    """Post-training quantisation of a user's float model
    (`memsim.workloads.ptq.quantize_model`)."""

    weight_bits: int = 8
    scheme: QuantScheme = QuantScheme.SYMMETRIC
    per_channel: bool | None = None
    """None: per-channel scales for 2 bits and more, per tensor for 1 bit."""
    exclude: tuple[str, ...] = ()
    """Module names kept float (e.g. a first layer the user wants exact)."""


@dataclass(frozen=True)
class TorchModelSpec:
    """A user's own torch model: code the user names, weights read as data.

    `builder` ("package.module:function") is imported and called with `args` to build the
    float model (this runs the user's own code, as importing it would); `weights` is a
    state_dict read with ``torch.load(weights_only=True)``, so the weight file cannot run
    code. `path` is a directory put in front of the import path (default: the config's)."""

    builder: str
    weights: str
    args: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One model: exactly one of `train`, `checkpoint`, `torch_model` (with `ptq`) or, from
    Python, `module` (a `torch.nn.Module`: quantised with `ptq`, or used as it is when it
    already has memsim's quantised layers)."""

    name: str
    train: TrainSpec | None = None
    checkpoint: str | None = None
    torch_model: TorchModelSpec | None = None
    ptq: PtqSpec | None = None
    module: Any = field(default=None, compare=False)
    """Typed `Any`: the spec layer does not import torch; `models` checks it."""

    @property
    def kind(self) -> ModelSourceKind:
        if self.train is not None:
            return ModelSourceKind.TRAIN
        if self.checkpoint is not None:
            return ModelSourceKind.CHECKPOINT
        if self.module is not None:
            return ModelSourceKind.MODULE
        return ModelSourceKind.TORCH


@dataclass(frozen=True)
class DataSelection:
    """The test data every model is evaluated on (and the default data of inline training
    configs)."""

    name: str
    dir: str | None = None
    image_size: int | None = None
    test_images: int | None = None
    """Evaluate on the first N test images (None: all)."""


@dataclass(frozen=True)
class DeviceRef:
    """A device as named in the config, its file (`MEMORY_DEVICE` for a document given in
    memory), its validated spec, its merged document (`extends:` applied) and that document's
    hash (what an evaluation's key records)."""

    ref: str
    path: str
    spec: DeviceSpec
    spec_hash: str
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Scenario:
    """Environment knob values (temperature, time since programming); a device without one of
    these knobs stays at its nominal environment."""

    name: str
    knobs: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceEntry:
    """A device under test: the control knobs to sweep (their grid), other knobs held fixed,
    the scenarios it is evaluated in."""

    label: str
    device: DeviceRef
    sweep: tuple[tuple[str, tuple[float, ...]], ...] = ()
    knobs: Mapping[str, float] = field(default_factory=dict)
    scenarios: tuple[str, ...] = (NOMINAL_SCENARIO,)

    def operating_points(self) -> list[dict[str, float]]:
        """Every combination of the swept values (first knob slowest, values in file order),
        with the held knobs; knobs named nowhere stay nominal."""
        names = [k for k, _ in self.sweep]
        out = []
        for combo in itertools.product(*(values for _, values in self.sweep)):
            out.append({**dict(self.knobs), **dict(zip(names, combo, strict=True))})
        return out


@dataclass(frozen=True)
class FixedMemory:
    """Layers held in another memory at fixed knobs for the whole sweep (e.g. the first and
    last layer in SRAM at nominal voltage)."""

    name: str
    device: DeviceRef
    layers: tuple[str, ...]
    """Quantised layer names, or `first` / `last`."""
    knobs: Mapping[str, float] = field(default_factory=dict)
    capacity_mib: float | None = None


@dataclass(frozen=True)
class PlacementSpec:
    """Where the layers live: the fixed memories; every other layer is in the device under
    test."""

    name: str
    fixed: tuple[FixedMemory, ...] = ()


@dataclass(frozen=True)
class ProtectionSpec:
    """Protection of the memory under test (`memsim.memory.protection.Protection`)."""

    name: str
    protected_msbs: int = 0
    ecc: str = "none"
    interleave: int = 1
    on_uncorrectable: str = "leave"

    def to_dict(self) -> dict[str, Any]:
        return {"protected_msbs": self.protected_msbs, "ecc": self.ecc,
                "interleave": self.interleave, "on_uncorrectable": self.on_uncorrectable}


@dataclass(frozen=True)
class ChipRule:
    """How many chips: `max_chips` exactly when `target_half_width` is None, else chips in
    batches of `batch` until the `confidence` interval of the accuracy (chips as clusters) has
    a half-width of at most `target_half_width` (a fraction: 0.01 is one point) after at least
    `min_chips`, or `max_chips` are in (`memsim.experiments.stats.AdaptiveChips`)."""

    batch: int
    min_chips: int
    max_chips: int
    target_half_width: float | None = None
    confidence: float = 0.95

    @property
    def adaptive(self) -> bool:
        return self.target_half_width is not None


@dataclass(frozen=True)
class ReferenceMemory:
    """What a sweep's energies are compared with (`relative_energy`): a device at knob values
    (unnamed knobs at nominal) holding the same bits under the same placement and protection;
    `device` None: each device under test at its own nominal control knobs."""

    device: DeviceRef | None = None
    knobs: Mapping[str, float] = field(default_factory=dict)

    def label(self) -> str:
        if self.device is None:
            return "each device at its nominal control knobs"
        knobs = ", ".join(f"{k}={v:g}" for k, v in self.knobs.items())
        return f"{self.device.name} at " + (knobs if knobs else "nominal")


@dataclass(frozen=True)
class ExperimentSpec:
    """A complete, validated experiment."""

    name: str
    models: tuple[ModelEntry, ...]
    devices: tuple[DeviceEntry, ...]
    deployment: Deployment
    chips: ChipRule
    description: str = ""
    seed: int = 0
    data: DataSelection | None = None
    scenarios: tuple[Scenario, ...] = (Scenario(NOMINAL_SCENARIO),)
    placements: tuple[PlacementSpec, ...] = (PlacementSpec("all"),)
    protections: tuple[ProtectionSpec, ...] = (ProtectionSpec("none"),)
    trials: int = 1
    budgets_points: tuple[float, ...] = DEFAULT_BUDGETS_POINTS
    reference: ReferenceMemory = ReferenceMemory()
    source: str = "<config>"
    document: Mapping[str, Any] = field(default_factory=dict)
    """The config as read (after overrides), for the record."""

    def scenario(self, name: str) -> Scenario:
        return next(s for s in self.scenarios if s.name == name)


# -- parsing --------------------------------------------------------------------------------


def _base(file: str) -> Path:
    return Path(file).parent if file not in ("", "<config>") else Path.cwd()


def _relative(node: Node, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else _base(node.file) / p


def _existing_file(n: Node) -> str:
    path = _relative(n, n.string())
    if not path.is_file():
        raise n.fail(f"no such file: {printable(str(path))}")
    return str(path)


def _unique(items: Sequence[Any], key: Callable[[Any], str], node: Node, what: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        k = key(item)
        if k in seen:
            raise node.child(i, None).fail(f"{what} {printable(k)!r} appears twice")
        seen.add(k)


def _items(node: Node, read: Callable[[Node], Any], min_len: int = 0) -> list[Any]:
    """Read every item of a list, collecting the problems of all items."""
    problems: list[SpecProblem] = []
    out = []
    for child in node.sequence(min_len):
        try:
            out.append(read(child))
        except SpecError as e:
            problems.extend(e.problems)
    if problems:
        raise SpecError(problems)
    return out


def _spec_hash(document: Any) -> str:
    # The merged document (extends applied), canonical: a changed number changes the hash,
    # the file's location does not, and a document given in memory hashes as its file would.
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _device_ref(n: Node) -> DeviceRef:
    value = n.value
    if isinstance(value, Mapping):
        # a device document in memory (a config built in Python): validated as its file would
        # be, problems named by their path inside the experiment
        try:
            document = resolve_extends(value, MEMORY_DEVICE, _base(n.file))
            spec = parse_device(document, MEMORY_DEVICE)
        except SpecError as e:
            raise _prefixed(e, MEMORY_DEVICE, n) from None
        return DeviceRef(spec.name, MEMORY_DEVICE, spec, _spec_hash(document), document)
    if hasattr(value, "spec") and hasattr(value, "document"):  # a memsim.Device
        spec, document = value.spec, value.document
        if not isinstance(spec, DeviceSpec) or not isinstance(document, Mapping):
            raise n.fail(f"{printable(getattr(spec, 'name', '?'))}: a Device built from a "
                         "DeviceSpec alone has no document to record; build it with "
                         "Device.from_document or memsim.load_device")
        if parse_device(document, spec.file) != spec:
            raise n.fail(f"{printable(spec.name)}: the Device's spec no longer matches its "
                         "document (changed after it was built?); edit the document and build "
                         "it with Device.from_document")
        return DeviceRef(spec.name, spec.file, spec, _spec_hash(document), document)
    if not isinstance(value, str):
        raise n.fail("expected a device name or file, a device document (a mapping) or a "
                     f"memsim.Device, got {type(value).__name__}")
    text = n.string()
    local = _relative(n, text)
    try:
        path = local if local.is_file() else resolve_device_path(text)
    except UnknownDeviceError as e:
        raise n.fail(str(e)) from None
    document = load_document(path)
    spec = parse_device(document, str(path))
    return DeviceRef(text, str(path), spec, _spec_hash(document), document)


def _knob_values(n: Node, spec: DeviceSpec, allowed: Sequence[KnobRole], why: str,
                 problems: list[SpecProblem]) -> dict[str, Node]:
    """The entries of a mapping whose names are knobs of the device with an allowed role;
    the others become problems."""
    out: dict[str, Node] = {}
    for key, child in entries(n):
        if key not in spec.knob_names:
            problems.append(child.problem(
                f"{spec.name} has no knob {key!r}{nearest_hint(key, spec.knob_names)}; knobs: "
                f"{', '.join(spec.knob_names)}"))
            continue
        role = spec.knob(key).role
        if role not in allowed:
            problems.append(child.problem(f"{key} is a{'n' if role.value[0] in 'aeiou' else ''} "
                                          f"{role.value} knob of {spec.name}; {why}"))
            continue
        out[key] = child
    return out


def _in_range(n: Node, spec: DeviceSpec, knob: str) -> float:
    k = spec.knob(knob)
    value = n.number()
    if not k.low <= value <= k.high:
        raise n.fail(f"{knob}={value:g} is outside its range [{k.low:g}, {k.high:g}] {k.unit} "
                     f"({spec.name})")
    return value


_ROLE_HINT = {
    "sweep": "sweep control knobs only (environment knobs are scenarios, design knobs are held "
             "under knobs: or make another device)",
    "knobs": "set environment knobs in a scenario",
}


def _sweep(n: Node, spec: DeviceSpec) -> tuple[tuple[str, tuple[float, ...]], ...]:
    out = []
    problems: list[SpecProblem] = []
    chosen = _knob_values(n, spec, (KnobRole.CONTROL,), _ROLE_HINT["sweep"], problems)
    for key, child in chosen.items():
        try:
            raw = child.value
            items = child.sequence(1) if isinstance(raw, list) else [child]
            values = tuple(_in_range(c, spec, key) for c in items)
            if len(set(values)) != len(values):
                raise child.fail("a value appears twice")
            out.append((key, values))
        except SpecError as e:
            problems.extend(e.problems)
    if problems:
        raise SpecError(problems)
    return tuple(out)


def _held(n: Node, spec: DeviceSpec) -> dict[str, float]:
    problems: list[SpecProblem] = []
    chosen = _knob_values(n, spec, (KnobRole.CONTROL, KnobRole.DESIGN), _ROLE_HINT["knobs"],
                          problems)
    out = {}
    for k, c in chosen.items():
        try:
            out[k] = _in_range(c, spec, k)
        except SpecError as e:
            problems.extend(e.problems)
    if problems:
        raise SpecError(problems)
    return out


def _device_entry(n: Node, scenario_names: Sequence[str]) -> DeviceEntry:
    with n.fields() as f:
        ref = f.required("device", _device_ref)
        label = f.collect("label", safe_name, ref.spec.name)
        sweep = f.collect("sweep", lambda m: _sweep(m, ref.spec), _NO_SWEEP)
        held = f.collect("knobs", lambda m: _held(m, ref.spec), _no_knobs())
        scenarios = f.collect("scenarios", lambda m: _scenario_names(m, scenario_names),
                              tuple(scenario_names))
        for key in held:
            if key in dict(sweep):
                f.problems.append(n.child("knobs", None).child(key, None).problem(
                    "is swept as well; name it in one place"))
    return DeviceEntry(label, ref, sweep, held, scenarios)


def _scenario_names(n: Node, valid: Sequence[str]) -> tuple[str, ...]:
    names = []
    for child in n.sequence(1):
        name = child.string()
        if name not in valid:
            raise child.fail(f"unknown scenario {name!r}{nearest_hint(name, valid)}; scenarios: "
                             f"{', '.join(valid)}")
        names.append(name)
    if len(set(names)) != len(names):
        raise n.fail("a scenario appears twice")
    return tuple(names)


def _scenario(n: Node) -> Scenario:
    with n.fields() as f:
        name = f.required("name", safe_name)
        knobs = f.collect("knobs", lambda m: {k: c.number() for k, c in entries(m)},
                          _no_knobs())
    return Scenario(name, knobs)


def _layers(n: Node) -> tuple[str, ...]:
    layers = tuple(c.string() for c in n.sequence(1))
    if len(set(layers)) != len(layers):
        raise n.fail("a layer appears twice")
    return layers


def _fixed_memory(n: Node) -> FixedMemory:
    with n.fields() as f:
        ref = f.required("device", _device_ref)
        name = f.collect("name", safe_name, ref.spec.name)
        layers = f.collect_required("layers", _layers, _NO_NAMES)
        knobs = f.collect("knobs", lambda m: _held(m, ref.spec), _no_knobs())
        capacity = f.collect("capacity_mib", lambda m: m.number_in(0.0, None, low_open=True),
                             None)
        if name == UNDER_TEST:
            f.problems.append(n.child("name", name).problem(
                f"{UNDER_TEST!r} names the memory of the device under test; choose another"))
    return FixedMemory(name, ref, layers, knobs, capacity)


def _placement(n: Node) -> PlacementSpec:
    with n.fields() as f:
        name = f.required("name", safe_name)
        no_fixed: tuple[FixedMemory, ...] = ()
        fixed = f.collect("fixed", lambda m: tuple(_items(m, _fixed_memory)), no_fixed)
        f.check()
        fixed_node = n.child("fixed", None)
        try:
            _unique(fixed, lambda m: m.name, fixed_node, "memory name")
        except SpecError as e:
            f.problems.extend(e.problems)
        seen: set[str] = set()
        for i, m in enumerate(fixed):
            for layer in m.layers:
                if layer in seen:
                    f.problems.append(fixed_node.child(i, None).child("layers", None).problem(
                        f"layer {layer!r} is already in another memory"))
                seen.add(layer)
    return PlacementSpec(name, fixed)


def _protection(n: Node) -> ProtectionSpec:
    d = ProtectionSpec("none")
    with n.fields() as f:
        name = f.required("name", safe_name)
        return ProtectionSpec(
            name=name,
            protected_msbs=f.collect("protected_msbs", lambda m: m.integer(0, 64),
                                     d.protected_msbs),
            ecc=f.collect("ecc", lambda m: _choice(m, ECC_SCHEMES), d.ecc),
            interleave=f.collect("interleave", lambda m: m.integer(1, 64), d.interleave),
            on_uncorrectable=f.collect("on_uncorrectable",
                                       lambda m: _choice(m, UNCORRECTABLE_POLICIES),
                                       d.on_uncorrectable),
        )


def _choice(n: Node, valid: Sequence[str]) -> str:
    if not isinstance(n.value, str) or n.value not in valid:
        hint = nearest_hint(n.value, valid) if isinstance(n.value, str) else ""
        raise n.fail(f"expected one of {', '.join(valid)}, got {n.value!r}{hint}")
    return n.value


def _chips(n: Node) -> ChipRule:
    if not isinstance(n.value, Mapping):
        count = n.integer(1, 1 << 20)
        return ChipRule(count, count, count)
    with n.fields() as f:
        batch = f.collect("batch", lambda m: m.integer(1, 1 << 20), 4)
        max_chips = f.collect_required("max", lambda m: m.integer(1, 1 << 20), 1)
        min_chips = f.collect("min", lambda m: m.integer(2, 1 << 20), min(2 * batch, max_chips))
        target = f.collect_required(
            "target_half_width",
            lambda m: m.number_in(0.0, 1.0, low_open=True, what="an accuracy fraction"), 0.01)
        confidence = f.collect("confidence", lambda m: m.number_in(0.5, 1.0, what="a level"),
                               0.95)
        if confidence >= 1.0:
            f.problems.append(n.child("confidence", confidence).problem(
                "expected a level below 1"))
        if min_chips > max_chips:
            f.problems.append(n.child("min", min_chips).problem(
                f"expected at most max ({max_chips}), got {min_chips}"))
    return ChipRule(batch, min_chips, max_chips, target, confidence)


def parse_reference(n: Node) -> ReferenceMemory:
    """Read a `reference:` section: `device` and optional `knobs` (control or design)."""
    with n.fields() as f:
        ref = f.required("device", _device_ref)
        knobs = f.collect("knobs", lambda m: _held(m, ref.spec), _no_knobs())
    return ReferenceMemory(ref, knobs)


def _deployment(n: Node) -> Deployment:
    return parse_deployment(n)


def _data(n: Node) -> DataSelection:
    with n.fields() as f:
        name = f.required("name", Node.string)
        directory = f.collect("dir", lambda m: str(_relative(m, m.string())), None)
        size = f.collect("image_size", lambda m: m.integer(4, 1024), None)
        limit = f.collect("test_images", lambda m: m.integer(1, None), None)
    return DataSelection(name, directory, size, limit)


def parse_budgets(n: Node) -> tuple[float, ...]:
    """Read a `pareto:` section: `budgets_points`, accuracy budgets in percentage points."""
    with n.fields() as f:
        budgets = f.collect("budgets_points",
                            lambda m: tuple(c.number_in(0.0, 100.0) for c in m.sequence(1)),
                            DEFAULT_BUDGETS_POINTS)
    return budgets


def _ptq(n: Node) -> PtqSpec:
    d = PtqSpec()
    with n.fields() as f:
        bits = f.collect("weight_bits", lambda m: m.integer(1, 8), d.weight_bits)
        scheme = f.collect("scheme", lambda m: m.enum(QuantScheme), d.scheme)
        per_channel = f.collect("per_channel", Node.boolean, None)
        exclude = f.collect("exclude", lambda m: tuple(c.string() for c in m.sequence()),
                            _NO_NAMES)
        if bits == 1 and (scheme is not QuantScheme.SYMMETRIC or per_channel):
            f.problems.append(n.problem("1-bit weights use the sign quantiser: no scheme or "
                                        "per_channel"))
    return PtqSpec(bits, scheme, per_channel, exclude)


def _plain_value(n: Node) -> Any:
    v = n.value
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list):
        return [_plain_value(c) for c in n.sequence()]
    if isinstance(v, Mapping):
        return {k: _plain_value(c) for k, c in entries(n)}
    raise n.fail("expected numbers, strings, booleans, lists or mappings")


def _torch_model(n: Node) -> TorchModelSpec:
    with n.fields() as f:
        builder = f.required("builder", Node.string)
        if not _BUILDER.fullmatch(builder):
            f.problems.append(n.child("builder", builder).problem(
                f"expected package.module:function, got {printable(builder)!r}"))
        weights = f.collect_required("weights", _existing_file, "")
        no_args: dict[str, Any] = {}
        args = f.collect("args", _kwargs, no_args)
        path = f.collect("path", lambda m: str(_relative(m, m.string())),
                         str(_base(n.file)))
    return TorchModelSpec(builder, weights, args, path)


def _kwargs(n: Node) -> dict[str, Any]:
    n.mapping()
    return {k: _plain_value(c) for k, c in entries(n)}


def _prefixed(error: SpecError, file: str, node: Node) -> SpecError:
    """Problems of a document given inside an experiment (an inline training config, a device
    document from Python), validated as `file`: named by the experiment's file and paths from
    its root."""
    return SpecError([SpecProblem(node.file, f"{node.path}.{p.path}" if p.path else node.path,
                                  p.message) if p.file == file else p
                      for p in error.problems])


def _train(n: Node, model_name: str, data: DataSelection | None) -> TrainSpec:
    if isinstance(n.value, str):
        path = _relative(n, n.value)
        if not path.is_file():
            raise n.fail(f"no such training config: {printable(str(path))}")
        return load_training(path)
    raw = n.mapping()
    doc: dict[str, Any] = dict(raw)
    doc.setdefault("schema_version", 1)
    doc.setdefault("name", model_name)
    if "data" not in doc and data is not None:
        # an inline training config without data trains on the experiment's data set
        doc["data"] = {k: v for k, v in (("name", data.name), ("dir", data.dir),
                                         ("image_size", data.image_size)) if v is not None}
    try:
        return parse_training(doc, n.file)
    except SpecError as e:
        raise _prefixed(e, n.file, n) from None


def _model(n: Node, data: DataSelection | None) -> ModelEntry:
    with n.fields() as f:
        name = f.required("name", safe_name)
        sources = [k for k in ("train", "checkpoint", "torch_model", "module") if f.has(k)]
        train = f.collect("train", lambda m: _train(m, name, data), None)
        checkpoint = f.collect("checkpoint", _existing_file, None)
        torch_model = f.collect("torch_model", _torch_model, None)
        module = f.collect("module", _module, None)
        ptq = f.collect("ptq", _ptq, None)
        if len(sources) != 1:
            got = ", ".join(sources) if sources else "none"
            # (or `module`, from Python)
            f.problems.append(n.problem(f"expected exactly one of train, checkpoint, "
                                        f"torch_model; got {got}"))
        if f.has("ptq") and not {"torch_model", "module"} & set(sources):
            f.problems.append(n.child("ptq", None).problem(
                "post-training quantisation applies to a torch_model only (or a module, from "
                "Python)"))
        if "torch_model" in sources and not f.has("ptq"):
            f.problems.append(n.child("ptq", None).problem(
                "a torch_model needs ptq: {weight_bits: ...} (how its weights are stored)"))
        for source in ("torch_model", "module"):
            if source in sources and data is None:
                f.problems.append(n.child(source, None).problem(
                    f"a {source} is evaluated on the experiment's data: add data: "
                    "{name: ...}"))
    return ModelEntry(name, train, checkpoint, torch_model, ptq, module)


def _module(n: Node) -> Any:
    # duck-typed: torch is the models layer's to import; it checks the type
    if not callable(getattr(n.value, "state_dict", None)):
        raise n.fail(f"expected a torch.nn.Module (from Python), got {type(n.value).__name__}")
    return n.value


def recorded_document(value: Any) -> Any:
    """A config document as a sweep's manifest records it: devices given as `Device` objects
    become their documents, other Python objects (a model's module) their type's name."""
    if isinstance(value, Mapping):
        return {k: recorded_document(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [recorded_document(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    document = getattr(value, "document", None)
    if hasattr(value, "spec") and isinstance(document, Mapping):
        return recorded_document(document)
    return f"<python {type(value).__module__}.{type(value).__qualname__}>"


def _check_scenarios(root: Node, scenarios: Sequence[Scenario], devices: Sequence[DeviceEntry],
                     placements: Sequence[PlacementSpec]) -> list[SpecProblem]:
    """Each scenario knob is an environment knob, in range, of every device read in it."""
    problems: list[SpecProblem] = []
    fixed = [m.device for p in placements for m in p.fixed]
    for i, s in enumerate(scenarios):
        users = [d.device for d in devices if s.name in d.scenarios] + fixed
        node = root.child("scenarios", None).child(i, None).child("knobs", None)
        for knob, value in s.knobs.items():
            where = node.child(knob, value)
            having = [r.spec for r in users if knob in r.spec.knob_names]
            if not having:
                problems.append(where.problem(
                    f"no device read in scenario {s.name!r} has a knob {knob!r}"))
            for spec in having:
                k = spec.knob(knob)
                if k.role is not KnobRole.ENVIRONMENT:
                    problems.append(where.problem(
                        f"{knob} is a {k.role.value} knob of {spec.name}; scenarios set "
                        "environment knobs"))
                elif not k.low <= value <= k.high:
                    problems.append(where.problem(
                        f"{knob}={value:g} is outside its range [{k.low:g}, {k.high:g}] "
                        f"{k.unit} ({spec.name})"))
    return problems


def parse_experiment(document: Any, file: str = "<config>") -> ExperimentSpec:
    """Validate a loaded document; every problem is reported together as a `SpecError`.
    `file` names the document in problems and anchors its relative paths (default: the
    working directory)."""
    root = Node(document, file)
    with root.fields() as f:
        version = f.collect_required("schema_version", lambda n: n.integer(1, None), 1)
        if version != SCHEMA_VERSION:
            f.problems.append(root.child("schema_version", version).problem(
                f"expected {SCHEMA_VERSION}, got {version}"))
        stem = Path(file).stem if file != "<config>" else "experiment"
        name = f.collect("name", safe_name, stem)
        description = f.collect("description", Node.string, "")
        seed = f.collect("seed", lambda n: n.integer(0, (1 << 63) - 1), 0)
        data = f.collect("data", _data, None)
        no_models: tuple[ModelEntry, ...] = ()
        no_devices: tuple[DeviceEntry, ...] = ()
        models = f.collect_required("models", lambda n: tuple(_items(n, lambda m: _model(m, data),
                                                                     1)), no_models)
        scenarios = f.collect("scenarios", lambda n: tuple(_items(n, _scenario, 1)),
                              (Scenario(NOMINAL_SCENARIO),))
        names = [s.name for s in scenarios]
        devices = f.collect_required(
            "devices", lambda n: tuple(_items(n, lambda m: _device_entry(m, names), 1)),
            no_devices)
        placements = f.collect("placements", lambda n: tuple(_items(n, _placement, 1)),
                               (PlacementSpec("all"),))
        protections = f.collect("protections", lambda n: tuple(_items(n, _protection, 1)),
                                (ProtectionSpec("none"),))
        chips = f.collect_required("chips", _chips, ChipRule(1, 1, 1))
        trials = f.collect("trials", lambda n: n.integer(1, 1 << 16), 1)
        if f.has("energy"):
            f.node_of("energy")
            f.problems.append(root.child("energy", None).problem(
                "the energy section is now `deployment:` (a preset such as always-on, "
                "throughput, streamed; see configs/README.md): inference_time_s became "
                "inference_rate_hz = 1 / inference_time_s"))
        deployment = f.collect_required("deployment", _deployment, _PLACEHOLDER_DEPLOYMENT)
        reference = f.collect("reference", parse_reference, ReferenceMemory())
        budgets = f.collect("pareto", parse_budgets, DEFAULT_BUDGETS_POINTS)
        checks: list[tuple[str, Sequence[Any], Callable[[Any], str], str]] = [
            ("models", models, lambda x: x.name, "model"),
            ("scenarios", scenarios, lambda x: x.name, "scenario"),
            ("devices", devices, lambda x: x.label, "device label"),
            ("placements", placements, lambda x: x.name, "placement"),
            ("protections", protections, lambda x: x.name, "protection"),
        ]
        for key, items, name_of, label in checks:
            try:
                _unique(items, name_of, root.child(key, None), label)
            except SpecError as e:
                f.problems.extend(e.problems)
        if devices:  # cross-checks only on devices that parsed: no spurious problems
            f.problems.extend(_check_scenarios(root, scenarios, devices, placements))
    return ExperimentSpec(
        name=name, models=models, devices=devices, deployment=deployment, chips=chips,
        description=description, seed=seed, data=data, scenarios=scenarios,
        placements=placements, protections=protections, trials=trials,
        budgets_points=budgets, reference=reference, source=file,
        document=recorded_document(document) if isinstance(document, Mapping) else {})


def apply_config_overrides(document: Any, overrides: Sequence[str], file: str) -> Any:
    """`apply_overrides` one at a time, a deployment named by its preset alone becoming
    `{preset: NAME}` in between, so that `deployment=streamed` and then
    `deployment.inference_rate_hz=100` compose."""
    for item in overrides:
        if isinstance(document, Mapping) and isinstance(document.get("deployment"), str):
            document = {**document, "deployment": {"preset": document["deployment"]}}
        document = apply_overrides(document, [item], file)
    return document


def load_experiment(name_or_path: str | Path, overrides: Sequence[str] = ()) -> ExperimentSpec:
    """Read, override (`key.path=value`, values as YAML) and validate an experiment config:
    a built-in name (`quickstart`) or a file. An unknown name is an `UnknownConfigError`,
    anything wrong in the config a `SpecError`."""
    path = resolve_config_path(name_or_path)
    document = apply_config_overrides(read_yaml(path), overrides, str(path))
    if document is None:
        raise SpecError.single(str(path), "", "empty file: expected an experiment config")
    return parse_experiment(document, str(path))
