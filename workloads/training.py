"""Training runs: plain, bit-flip injection through a device, RandBET, Gaussian weight noise and
consistency regularisation, with resumable checkpoints.

Reproducibility: the model is initialised from `spec.seed`; epoch e shuffles with its own seed
derived from (seed, e), and every random draw of step s of epoch e (a chip's trial, RandBET's
flips, weight noise) descends from (seed, e, s) through `numpy.random.SeedSequence`. So a run
stopped after any epoch and resumed from its checkpoint ends with the same weights as an
uninterrupted one (tested), with `torch_threads` pinned.

A checkpoint (`checkpoint.pt` in the output directory, written atomically after every epoch)
records the resolved config, the seed, the code version, the epoch, the model, optimiser and
scheduler states and the history; it is read with ``torch.load(weights_only=True)``, so a
checkpoint cannot run code when loaded.
"""

from __future__ import annotations

import io
import math
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import memsim
from memsim.errors import MemsimError, SpecError
from memsim.files import atomic_write_bytes
from memsim.kernels import flip_bits_
from memsim.memory.chip import Chip
from memsim.spec.training import (
    LossKind,
    MethodKind,
    OptimizerKind,
    Schedule,
    TorchDevice,
    TrainSpec,
    parse_training,
)
from memsim.workloads.bridge import ModelImage, clear
from memsim.workloads.data import Dataset, DataSplit, load_dataset, make_loader
from memsim.workloads.layers import (
    aligned,
    clip_weights_,
    iter_quantized_layers,
    stacked_input,
)
from memsim.workloads.losses import (
    ConsistencyRegularization,
    CrossEntropyLoss,
    MarginCrossEntropyLoss,
    ModifiedHingeLoss,
)
from memsim.workloads.metrics import logit_stats
from memsim.workloads.models import WEIGHT_RANGES, build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "EpochRecord",
    "TrainResult",
    "TrainedModel",
    "build_loss",
    "build_model_for",
    "evaluate_clean",
    "load_checkpoint",
    "predict",
    "predict_stacked",
    "select_device",
    "train",
]

CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "checkpoint.pt"
_MODEL_OPTIONS = ("width_multiplier", "weight_clip", "weight_range", "output_scale")


class CheckpointError(MemsimError):
    """A checkpoint that cannot be read or does not fit."""


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    history: tuple[EpochRecord, ...]
    resumed_at_epoch: int
    """Epochs that were already done when this call started (0: a fresh run)."""

    @property
    def test_accuracy(self) -> float:
        return self.history[-1].test_accuracy if self.history else math.nan


def code_version() -> str:
    """memsim's version, plus the git commit when run from a checkout."""
    version = f"memsim {memsim.__version__}"
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True, timeout=5, check=False)
            if out.returncode == 0 and out.stdout.strip():
                version += f" ({out.stdout.strip()})"
        except (OSError, subprocess.SubprocessError):
            pass
    return version


def select_device(kind: TorchDevice) -> torch.device:
    if kind is TorchDevice.CUDA:
        if not torch.cuda.is_available():
            raise MemsimError("device: cuda, but torch sees no CUDA device")
        return torch.device("cuda")
    if kind is TorchDevice.AUTO and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _derive(*words: int) -> int:
    return int(np.random.SeedSequence([int(w) for w in words]).generate_state(1, np.uint64)[0])


# -- building blocks from a spec ----------------------------------------------------------


def build_model_for(spec: TrainSpec, dataset: Dataset) -> nn.Module:
    """The model a config describes, for a data set's input shape and classes."""
    options = dict(spec.model.options)
    unknown = [k for k in options if k not in _MODEL_OPTIONS]
    if unknown:
        raise SpecError.single(spec.source, f"model.options.{unknown[0]}",
                               f"unknown option; valid: {', '.join(_MODEL_OPTIONS)}")
    channels, height, width = dataset.input_shape
    if height != width:
        raise SpecError.single(spec.source, "data", f"square images expected, got "
                               f"{height}x{width}")
    kwargs: dict[str, Any] = {}
    for key in _MODEL_OPTIONS:
        if key in options:
            value = options[key]
            if key == "output_scale" and value == "learned":
                continue
            if key == "weight_range":
                if value not in WEIGHT_RANGES:
                    raise SpecError.single(spec.source, f"model.options.{key}",
                                           f"expected one of {', '.join(WEIGHT_RANGES)}, got "
                                           f"{value!r}")
                kwargs[key] = value
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                expected = ("'learned' or a number > 0 (a fixed scale)"
                            if key == "output_scale" else "a number")
                raise SpecError.single(spec.source, f"model.options.{key}",
                                       f"expected {expected}, got {value!r}")
            kwargs[key] = float(value)
    try:
        return build_model(spec.model.name, num_classes=dataset.num_classes,
                           in_channels=channels, image_size=height,
                           weight_bits=spec.model.weight_bits,
                           weight_scheme=spec.model.scheme.value,
                           per_channel=spec.model.granularity.value == "per_channel",
                           binary_activations=spec.model.binary_activations, **kwargs)
    except MemsimError as e:
        raise SpecError.single(spec.source, "model", str(e)) from None


def build_loss(spec: TrainSpec) -> nn.Module:
    loss = spec.loss
    if loss.kind is LossKind.MCEL:
        return MarginCrossEntropyLoss(margin=loss.margin, logit_bound=loss.bound)
    if loss.kind is LossKind.MHL:
        return ModifiedHingeLoss(margin=loss.hinge_b)
    return CrossEntropyLoss()


def _dataset(spec: TrainSpec) -> Dataset:
    try:
        data = load_dataset(spec.data.name, spec.data.dir, image_size=spec.data.image_size,
                            seed=spec.seed)
    except MemsimError as e:
        raise type(e)(f"{spec.source}: data: {e}") from None
    keep = spec.data.train_images
    if keep is not None and keep < len(data.train):
        data = replace(data, train=DataSplit(data.train.images[:keep],
                                                         data.train.labels[:keep]))
    return data


def _optimizer(spec: TrainSpec, model: nn.Module
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    o = spec.optimizer
    params = list(model.parameters())
    optimizer: torch.optim.Optimizer
    if o.kind is OptimizerKind.SGD:
        optimizer = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum,
                                    weight_decay=o.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    if o.schedule is Schedule.COSINE:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs)
    elif o.schedule is Schedule.STEP:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.step_size,
                                                    gamma=o.gamma)
    return optimizer, scheduler


# -- one optimisation step per method -------------------------------------------------------

Step = Callable[[nn.Module, Tensor, Tensor, int], tuple[Tensor, Tensor]]
"""(model, x, y, step seed) -> (loss, logits); computes gradients, does not step."""


def _plain_step(loss_fn: nn.Module) -> Step:
    def step(model: nn.Module, x: Tensor, y: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        return loss.detach(), logits.detach()
    return step


def _bitflip_step(spec: TrainSpec, loss_fn: nn.Module) -> Step:
    """Bit-flip injection: the quantised weights are stored in a chip of the device, read at
    the operating point, and the forward pass runs on what was read; gradients reach the
    latent weights through the STE. A pool of `method.chips` chips is cycled over the steps."""
    m = spec.method
    assert m.device is not None
    try:
        device = memsim.load_device(m.device)
        knobs = device.resolve_knobs(dict(m.knobs))
    except MemsimError as e:
        raise type(e)(f"{spec.source}: method: {e}") from None
    sweep = {k: (v, v) for k, v in knobs.items()}
    chips: dict[int, Chip] = {}

    def step(model: nn.Module, x: Tensor, y: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        mi = ModelImage.of(model)
        index = seed % m.chips
        if index not in chips:
            chips[index] = Chip(device, mi.image.n_bits, _derive(spec.seed, 0x43484950, index),
                                sweep=sweep)
        read = chips[index].read(mi.image, knobs, seed=seed)
        with mi.loaded(model, read.image):
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
        return loss.detach(), logits.detach()
    return step


def _randbet_step(spec: TrainSpec, loss_fn: nn.Module) -> Step:
    """RandBET (Stutz et al. 2021): the mean of the gradients of a clean pass and of a pass on
    weights with random symmetric bit flips at rate `method.ber` in their stored codes."""
    ber = spec.method.ber

    def step(model: nn.Module, x: Tensor, y: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        logits = model(x)
        clean = loss_fn(logits, y)
        clean.backward()
        mi = ModelImage.of(model)
        words = np.array(mi.image.words)
        flip_bits_(words, mi.image.n_bits, ber, ber, seed)
        with mi.loaded(model, mi.image.with_words(words)):
            perturbed = loss_fn(model(x), y)
            perturbed.backward()
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.mul_(0.5)
        return ((clean + perturbed) / 2).detach(), logits.detach()
    return step


@contextmanager
def _weight_noise(model: nn.Module, sigma: float, generator: torch.Generator) -> Iterator[None]:
    layers = [layer for _, layer in iter_quantized_layers(model)]

    def perturb(w: Tensor) -> Tensor:
        scale = sigma * float(w.detach().abs().max())
        noise = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        return w + noise * scale

    for layer in layers:
        layer.weight_perturbation = perturb
    try:
        yield
    finally:
        for layer in layers:
            layer.weight_perturbation = None


def _gaussian_step(spec: TrainSpec, loss_fn: nn.Module) -> Step:
    """Gaussian weight-noise training: N(0, (σ·max|ŵ|)²) added to each quantised layer's
    weights in the forward pass, fresh every step."""
    sigma = spec.method.sigma

    def step(model: nn.Module, x: Tensor, y: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        generator = torch.Generator().manual_seed(seed % (1 << 63))
        with _weight_noise(model, sigma, generator):
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
        return loss.detach(), logits.detach()
    return step


def _consistency_step(spec: TrainSpec, loss_fn: nn.Module, model: nn.Module) -> Step:
    m = spec.method
    generator = torch.Generator()
    try:
        reg = ConsistencyRegularization(model, lam=m.lam, eta=m.eta,
                                        layers=list(m.layers) or None, task_loss=loss_fn,
                                        generator=generator)
    except MemsimError as e:
        raise SpecError.single(spec.source, "method", str(e)) from None

    def step(model: nn.Module, x: Tensor, y: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        generator.manual_seed(seed % (1 << 63))
        terms = reg.terms(x, y)
        torch.autograd.backward(terms.loss)
        return terms.loss.detach(), terms.logits.detach()
    return step


def _make_step(spec: TrainSpec, model: nn.Module, loss_fn: nn.Module) -> Step:
    kind = spec.method.kind
    if kind is MethodKind.BITFLIP:
        return _bitflip_step(spec, loss_fn)
    if kind is MethodKind.RANDBET:
        return _randbet_step(spec, loss_fn)
    if kind is MethodKind.GAUSSIAN:
        return _gaussian_step(spec, loss_fn)
    if kind is MethodKind.CONSISTENCY:
        return _consistency_step(spec, loss_fn, model)
    return _plain_step(loss_fn)


# -- evaluation -----------------------------------------------------------------------------


def predict(model: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    """Logits of `images` in eval mode, batched, on the model's device, returned on CPU."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            out.append(model(aligned(images[start:start + batch_size].to(device))).cpu())
    return torch.cat(out)


def predict_stacked(model: nn.Module, images: Tensor, sets: int, batch_size: int = 512
                    ) -> Tensor:
    """`predict` for a model holding ``sets`` stacked weight sets: logits (sets, N, classes),
    set b's equal bit for bit to `predict` with set b loaded alone (same image batches)."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start:start + batch_size].to(device)
            logits = model(stacked_input(chunk, sets))  # set 0 aligned as `predict`'s input
            out.append(logits.reshape(sets, chunk.shape[0], *logits.shape[1:]).cpu())
    return torch.cat(out, dim=1)


def evaluate_clean(model: nn.Module, dataset: Dataset) -> float:
    return logit_stats(predict(model, dataset.test.images), dataset.test.labels,
                       quantiles=False).accuracy


# -- checkpoints ----------------------------------------------------------------------------


def _save_atomic(payload: Mapping[str, Any], path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for truncated or foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        # torch's own messages can be paragraphs about weights_only: name the kind instead
        reason = first if 0 < len(first) <= 80 else type(e).__name__
        raise CheckpointError(f"{path}: not a readable memsim checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a memsim checkpoint of format {CHECKPOINT_FORMAT}")
    for key in ("config", "epoch", "model_state", "history"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return payload


@dataclass
class TrainedModel:
    """A model restored from a checkpoint, with its config and data set."""

    spec: TrainSpec
    model: nn.Module
    dataset: Dataset
    epoch: int
    complete: bool
    history: tuple[EpochRecord, ...]
    code_version: str


def load_checkpoint(path: str | Path, *, data_dir: str | None = None) -> TrainedModel:
    """Rebuild the model of a checkpoint and load its weights (eval mode, CPU).

    `data_dir` overrides the config's data directory (the data moved since training)."""
    p = Path(path)
    payload = _read_checkpoint(p)
    try:
        spec = parse_training(payload["config"], str(p))
    except SpecError as e:
        raise CheckpointError(f"{p}: its config does not validate: {e}") from None
    if data_dir is not None:
        spec = _with_data_dir(spec, data_dir)
    dataset = _dataset(spec)
    torch.manual_seed(spec.seed)
    model = build_model_for(spec, dataset)
    try:
        model.load_state_dict(payload["model_state"])
    except (RuntimeError, TypeError) as e:
        raise CheckpointError(f"{p}: weights do not fit the model "
                              f"({str(e).splitlines()[0][:120]})") from None
    model.eval()
    return TrainedModel(spec, model, dataset, _epoch(p, payload["epoch"]),
                        bool(payload.get("complete", False)), _history(p, payload["history"]),
                        str(payload.get("code_version", "?")))


def _epoch(path: Path, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CheckpointError(f"{path}: epoch {_short_repr(value)} is not an integer >= 0")
    return value


def _history(path: Path, entries: Any) -> tuple[EpochRecord, ...]:
    """The per-epoch records, each checked: a checkpoint is read weights-only, but its plain
    values may still be anything."""
    if not isinstance(entries, list | tuple):
        raise CheckpointError(f"{path}: history is not a list")
    names = [f.name for f in fields(EpochRecord)]
    out = []
    for i, h in enumerate(entries):
        if (not isinstance(h, dict) or sorted(h) != sorted(names)
                or not all(isinstance(h[n], int | float) and not isinstance(h[n], bool)
                           for n in names) or not isinstance(h["epoch"], int)):
            raise CheckpointError(f"{path}: history entry {i} is not a record of "
                                  f"{', '.join(names)} (numbers)")
        out.append(EpochRecord(**h))
    return tuple(out)


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _with_data_dir(spec: TrainSpec, data_dir: str) -> TrainSpec:
    from dataclasses import replace
    return replace(spec, data=replace(spec.data, dir=data_dir))


# -- the loop -------------------------------------------------------------------------------


ProgressFactory = Callable[[int, str], Any]


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from memsim.progress import progress_bar

    return progress_bar(total, desc, "batch", leave=False)


def train(spec: TrainSpec, out_dir: str | Path, *, progress: bool = False,
          stop_after_epochs: int | None = None, log: Callable[[str], None] | None = None
          ) -> TrainResult:
    """Train `spec` into `out_dir`, resuming from its checkpoint if one is there.

    `stop_after_epochs` ends the call after that many epochs in total (an interruption, for
    tests and for splitting long runs); calling again resumes.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME
    torch.set_num_threads(spec.torch_threads)
    device = select_device(spec.device)
    dataset = _dataset(spec)
    torch.manual_seed(spec.seed)
    model = build_model_for(spec, dataset).to(device)
    loss_fn = build_loss(spec)
    optimizer, scheduler = _optimizer(spec, model)
    history: list[EpochRecord] = []
    start = 0
    if ckpt_path.exists():
        payload = _read_checkpoint(ckpt_path)
        if payload["config"] != spec.to_dict():
            raise CheckpointError(f"{ckpt_path} was written by another config; use another "
                                  "--out directory or remove it")
        model.load_state_dict(payload["model_state"])
        optimizer.load_state_dict(payload["optimizer_state"])
        if scheduler is not None and payload.get("scheduler_state") is not None:
            scheduler.load_state_dict(payload["scheduler_state"])
        history = [EpochRecord(**h) for h in payload["history"]]
        start = int(payload["epoch"])
    resumed = start
    step_fn = _make_step(spec, model, loss_fn)
    end = spec.epochs if stop_after_epochs is None else min(spec.epochs, stop_after_epochs)
    clip = spec.method.clip_weights
    for epoch in range(start, end):
        t0 = time.perf_counter()
        model.train()
        loader = make_loader(dataset.train, spec.batch_size, shuffle=True,
                             seed=_derive(spec.seed, epoch) % (1 << 63))
        bar = _progress(len(loader), f"{spec.name} epoch {epoch + 1}/{spec.epochs}", progress)
        total_loss = correct = seen = 0.0
        for step, (x, y) in enumerate(loader):
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss, logits = step_fn(model, x, y, _derive(spec.seed, epoch, step))
            optimizer.step()
            if clip is not None:
                clip_weights_(model, clip)
            n = int(y.shape[0])
            total_loss += float(loss) * n
            correct += float((logits.argmax(dim=1) == y).sum())
            seen += n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
        if bar is not None:
            bar.close()
        if scheduler is not None:
            scheduler.step()
        clear(model)
        test_acc = evaluate_clean(model, dataset)
        record = EpochRecord(epoch + 1, total_loss / max(seen, 1), correct / max(seen, 1),
                             test_acc, time.perf_counter() - t0)
        history.append(record)
        if log is not None:
            log(f"{spec.name}: epoch {record.epoch}/{spec.epochs} loss {record.loss:.4f} "
                f"train {record.train_accuracy:.3f} test {record.test_accuracy:.3f} "
                f"({record.seconds:.1f} s)")
        _save_atomic({
            "format": CHECKPOINT_FORMAT,
            "code_version": code_version(),
            "config": spec.to_dict(),
            "seed": spec.seed,
            "epoch": epoch + 1,
            "complete": epoch + 1 == spec.epochs,
            "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
            "history": [asdict(h) for h in history],
        }, ckpt_path)
    return TrainResult(ckpt_path, tuple(history), resumed)
