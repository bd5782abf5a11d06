"""Training configs: frozen dataclasses read from YAML, validated like device files.

A config names the data, the model and its weight quantisation, the loss, the training method
(plain, bit-flip injection through a device, RandBET, Gaussian weight noise, consistency
regularisation) and the optimiser. Names of data sets and models are checked by the workloads
layer that builds them (it knows its registries); everything else is checked here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from memsim.errors import SpecError
from memsim.spec.fields import Node, entries, safe_name
from memsim.spec.loader import read_yaml

SCHEMA_VERSION = 1


class LossKind(StrEnum):
    CE = "ce"
    MCEL = "mcel"
    MHL = "mhl"


class MethodKind(StrEnum):
    PLAIN = "plain"
    BITFLIP = "bitflip"
    RANDBET = "randbet"
    GAUSSIAN = "gaussian"
    CONSISTENCY = "consistency"


class QuantScheme(StrEnum):
    SYMMETRIC = "symmetric"
    ASYMMETRIC = "asymmetric"


class Granularity(StrEnum):
    PER_TENSOR = "per_tensor"
    PER_CHANNEL = "per_channel"


class OptimizerKind(StrEnum):
    ADAM = "adam"
    SGD = "sgd"


class Schedule(StrEnum):
    NONE = "none"
    COSINE = "cosine"
    STEP = "step"


class TorchDevice(StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


@dataclass(frozen=True)
class DataSpec:
    name: str = "digits"
    """Data set: digits (built in), synthetic, mnist-5k (the mnist extra), mnist,
    fashion-mnist, cifar10, svhn, imagenette/imagefolder (read from `dir`)."""
    dir: str | None = None
    """Directory of an on-disk data set (relative paths are relative to the config file)."""
    image_size: int | None = None
    """Resize images to this side (ImageFolder); None: the data set's own size."""
    train_images: int | None = None
    """Train on the first N training images (quick runs, benchmarks); None: all."""


@dataclass(frozen=True)
class ModelSpec:
    name: str = "mlp"
    weight_bits: int = 4
    """1: binarised weights (sign); 2-8: uniform k-bit."""
    scheme: QuantScheme = QuantScheme.SYMMETRIC
    granularity: Granularity = Granularity.PER_TENSOR
    binary_activations: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    """Builder-specific options (e.g. `hidden: [128, 128]` for the MLP)."""


@dataclass(frozen=True)
class LossSpec:
    kind: LossKind = LossKind.CE
    margin: float = 32.0
    """MCEL margin m on the true class's bounded logit."""
    bound: float = 100.0
    """MCEL logit bound L in L·tanh(z/L)."""
    hinge_b: float = 128.0
    """MHL b."""


@dataclass(frozen=True)
class MethodSpec:
    kind: MethodKind = MethodKind.PLAIN
    device: str | None = None
    """Bit-flip injection: the device (built-in name or file) whose faults corrupt the weights."""
    knobs: Mapping[str, float] = field(default_factory=dict)
    """Bit-flip injection: the operating point (unnamed knobs nominal)."""
    chips: int = 4
    """Bit-flip injection: a pool of chips cycled over the steps (fresh trial seed each step)."""
    ber: float = 0.01
    """RandBET: rate of symmetric random bit flips in the quantised weights."""
    sigma: float = 0.1
    """Gaussian noise training: noise std relative to each layer's max |w|."""
    eta: float = 0.2
    """Consistency regularisation: weight noise scale relative to max |w| per layer."""
    lam: float = 1.0
    """Consistency regularisation: weight λ of the feature-matching term."""
    layers: tuple[str, ...] = ()
    """Consistency regularisation: matched layers (module names); empty: every quantised one."""
    clip_weights: float | None = None
    """Project latent weights into [-w, w] after each step (RandBET's weight clipping)."""


@dataclass(frozen=True)
class OptimizerSpec:
    kind: OptimizerKind = OptimizerKind.ADAM
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Schedule = Schedule.NONE
    step_size: int = 10
    gamma: float = 0.1


@dataclass(frozen=True)
class TrainSpec:
    """A complete, validated training run."""

    name: str
    seed: int = 0
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    loss: LossSpec = LossSpec()
    method: MethodSpec = MethodSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    epochs: int = 10
    batch_size: int = 64
    torch_threads: int = 1
    device: TorchDevice = TorchDevice.AUTO
    source: str = "<config>"
    """The file it came from (not part of the run's identity)."""

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (what checkpoints record)."""
        out = {"schema_version": SCHEMA_VERSION}
        out.update({f.name: _plain(getattr(self, f.name)) for f in fields(self)
                    if f.name != "source"})
        return out


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


# -- parsing ----------------------------------------------------------------------------------


def _name(n: Node) -> str:
    return n.string()


def _data(n: Node) -> DataSpec:
    with n.fields() as f:
        name = f.collect("name", _name, "digits")
        directory = f.collect("dir", Node.string, None)
        size = f.collect("image_size", lambda m: m.integer(4, 1024), None)
        train_images = f.collect("train_images", lambda m: m.integer(1, None), None)
    if directory is not None and not Path(directory).is_absolute() and n.file != "<config>":
        directory = str(Path(n.file).parent / directory)
    return DataSpec(name, directory, size, train_images)


def _options(n: Node) -> Mapping[str, Any]:
    out = {}
    for key, child in entries(n):
        v = child.value
        ok = (isinstance(v, int | float | str | bool) or v is None or (
            isinstance(v, list) and all(isinstance(x, int | float) and not isinstance(x, bool)
                                        for x in v)))
        if not ok:
            raise child.fail("expected a number, string, boolean or list of numbers")
        out[key] = tuple(v) if isinstance(v, list) else v
    return out


def _model(n: Node) -> ModelSpec:
    d = ModelSpec()
    with n.fields() as f:
        return ModelSpec(
            name=f.collect("name", _name, d.name),
            weight_bits=f.collect("weight_bits", lambda m: m.integer(1, 8), d.weight_bits),
            scheme=f.collect("scheme", lambda m: m.enum(QuantScheme), d.scheme),
            granularity=f.collect("granularity", lambda m: m.enum(Granularity), d.granularity),
            binary_activations=f.collect("binary_activations", Node.boolean,
                                         d.binary_activations),
            options=f.collect("options", _options, {}),
        )


def _loss(n: Node) -> LossSpec:
    d = LossSpec()
    with n.fields() as f:
        return LossSpec(
            kind=f.collect("kind", lambda m: m.enum(LossKind), d.kind),
            margin=f.collect("margin", lambda m: m.number_in(0.0, None), d.margin),
            bound=f.collect("bound", lambda m: m.number_in(0.0, None, low_open=True), d.bound),
            hinge_b=f.collect("hinge_b", lambda m: m.number_in(0.0, None, low_open=True),
                              d.hinge_b),
        )


def _knobs(n: Node) -> Mapping[str, float]:
    return {k: c.number() for k, c in entries(n)}


def _layers(n: Node) -> tuple[str, ...]:
    return tuple(c.string() for c in n.sequence())


def _method(n: Node) -> MethodSpec:
    d = MethodSpec()
    with n.fields() as f:
        spec = MethodSpec(
            kind=f.collect("kind", lambda m: m.enum(MethodKind), d.kind),
            device=f.collect("device", Node.string, None),
            knobs=f.collect("knobs", _knobs, {}),
            chips=f.collect("chips", lambda m: m.integer(1, 1 << 16), d.chips),
            ber=f.collect("ber", lambda m: m.number_in(0.0, 0.5, what="a bit error rate"),
                          d.ber),
            sigma=f.collect("sigma", lambda m: m.number_in(0.0, None), d.sigma),
            eta=f.collect("eta", lambda m: m.number_in(0.0, None), d.eta),
            lam=f.collect("lam", lambda m: m.number_in(0.0, None), d.lam),
            layers=f.collect("layers", _layers, ()),
            clip_weights=f.collect("clip_weights",
                                   lambda m: m.number_in(0.0, None, low_open=True), None),
        )
        if spec.kind is MethodKind.BITFLIP and spec.device is None:
            f.problems.append(n.child("device", None).problem(
                "bit-flip injection needs a device (built-in name or file)"))
    return spec


def _optimizer(n: Node) -> OptimizerSpec:
    d = OptimizerSpec()
    with n.fields() as f:
        return OptimizerSpec(
            kind=f.collect("kind", lambda m: m.enum(OptimizerKind), d.kind),
            lr=f.collect("lr", lambda m: m.number_in(0.0, None, low_open=True), d.lr),
            momentum=f.collect("momentum", lambda m: m.number_in(0.0, 1.0), d.momentum),
            weight_decay=f.collect("weight_decay", lambda m: m.number_in(0.0, None),
                                   d.weight_decay),
            schedule=f.collect("schedule", lambda m: m.enum(Schedule), d.schedule),
            step_size=f.collect("step_size", lambda m: m.integer(1, None), d.step_size),
            gamma=f.collect("gamma", lambda m: m.number_in(0.0, 1.0, low_open=True), d.gamma),
        )


def parse_training(document: Any, file: str = "<config>") -> TrainSpec:
    """Validate a loaded document; every problem is reported together as a `SpecError`."""
    root = Node(document, file)
    d = TrainSpec(name="")
    with root.fields() as f:
        version = f.collect_required("schema_version", lambda n: n.integer(1, None), 1)
        if version != SCHEMA_VERSION:
            f.problems.append(root.child("schema_version", version).problem(
                f"expected {SCHEMA_VERSION}, got {version}"))
        spec = TrainSpec(
            name=f.collect_required("name", safe_name, "?"),  # names runs/<name>/
            seed=f.collect("seed", lambda n: n.integer(0, (1 << 63) - 1), d.seed),
            data=f.collect("data", _data, d.data),
            model=f.collect("model", _model, d.model),
            loss=f.collect("loss", _loss, d.loss),
            method=f.collect("method", _method, d.method),
            optimizer=f.collect("optimizer", _optimizer, d.optimizer),
            epochs=f.collect("epochs", lambda n: n.integer(1, 100_000), d.epochs),
            batch_size=f.collect("batch_size", lambda n: n.integer(1, 1 << 20), d.batch_size),
            torch_threads=f.collect("torch_threads", lambda n: n.integer(1, 1024),
                                    d.torch_threads),
            device=f.collect("device", lambda n: n.enum(TorchDevice), d.device),
            source=file,
        )
    return spec


def apply_overrides(document: Any, overrides: Sequence[str], file: str = "<config>") -> Any:
    """Apply `key.path=value` overrides (values parsed as YAML) to a loaded document."""
    if not isinstance(document, Mapping):
        return document
    out: dict[str, Any] = _copy(document)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise SpecError.single(file, "", f"--set expects key.path=value, got {item!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise SpecError.single(file, key, f"--set value {text!r} is not valid YAML") from None
        target = out
        parts = key.strip().split(".")
        for i, part in enumerate(parts[:-1]):
            nxt = target.get(part)
            if nxt is None:
                nxt = target[part] = {}
            if not isinstance(nxt, dict):
                raise SpecError.single(file, ".".join(parts[:i + 1]),
                                       "--set cannot go inside a value that is not a mapping")
            target = nxt
        target[parts[-1]] = value
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def load_training(path: str | Path, overrides: Sequence[str] = ()) -> TrainSpec:
    """Read, override and validate a training config file."""
    p = Path(path)
    document = apply_overrides(read_yaml(p), overrides, str(p))
    if document is None:
        raise SpecError.single(str(p), "", "empty file: expected a training config")
    return parse_training(document, str(p))


def with_overrides(spec: TrainSpec, **changes: Any) -> TrainSpec:
    """A copy with top-level fields replaced (for tests and scripts)."""
    return replace(spec, **changes)
