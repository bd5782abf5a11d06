"""The models of a sweep: trained from a config (resumably), loaded from a checkpoint, or a
user's torch model quantised after training; each with its test data and the hashes that key
its evaluations."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from memsim.errors import MemsimError
from memsim.spec.experiment import (
    DataSelection,
    ExperimentSpec,
    ModelEntry,
    ModelSourceKind,
    PtqSpec,
)
from memsim.workloads.bridge import clear
from memsim.workloads.data import load_dataset
from memsim.workloads.layers import iter_quantized_layers
from memsim.workloads.ptq import quantize_model
from memsim.workloads.training import CheckpointError, build_model_for, load_checkpoint, train

__all__ = [
    "DRY_RUN_DIR",
    "LoadedModel",
    "RunnerError",
    "architecture_hash",
    "data_hash",
    "import_path",
    "model_hash",
    "prepare_models",
    "torch_threads_restored",
]

DRY_RUN_DIR = "dry-run"
DRY_RUN_TEST_IMAGES = 64

Log = Callable[[str], None]


class RunnerError(MemsimError):
    """A sweep that cannot be prepared, planned or read back (a model without quantised
    layers, a layer in no memory, a missing store)."""


@dataclass
class LoadedModel:
    """A quantised model ready for evaluation, with its test data and identities."""

    name: str
    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    model_hash: str
    data_hash: str
    layers: tuple[str, ...]
    source: str


def model_hash(model: nn.Module) -> str:
    """SHA-256 of a model's structure (its repr) and every tensor of its state (names, dtypes,
    shapes, bytes): what an evaluation depends on, not when or where it was saved."""
    h = hashlib.sha256(repr(model).encode("utf-8"))
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def data_hash(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of the test images and labels (values, dtypes, shapes)."""
    h = hashlib.sha256()
    for t in (images, labels):
        c = t.detach().cpu().contiguous()
        h.update(f"{c.dtype}{tuple(c.shape)}".encode())
        h.update(c.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def torch_threads_restored() -> Iterator[None]:
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def import_path(path: str | None) -> Iterator[None]:
    """``path`` first on sys.path while a user's builder is imported and called, then gone, so
    a folder of the user's does not shadow modules for the rest of the process."""
    if path is None or path in sys.path:
        yield
        return
    sys.path.insert(0, path)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(path)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0][:160] if text else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _import_builder(entry: ModelEntry) -> Callable[..., Any]:
    tm = entry.torch_model
    assert tm is not None
    module_name, _, func_name = tm.builder.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise RunnerError(f"model {entry.name}: cannot import {module_name} ({e})") from None
    except Exception as e:  # the user's module itself fails: a syntax error, a raise
        raise RunnerError(f"model {entry.name}: importing {module_name} failed: "
                          f"{_one_line(e)}") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise RunnerError(f"model {entry.name}: {module_name} has no function {func_name}")
    return fn  # type: ignore[no-any-return]


def _torch_model(entry: ModelEntry) -> nn.Module:
    tm, ptq = entry.torch_model, entry.ptq
    assert tm is not None and ptq is not None
    with import_path(tm.path):
        builder = _import_builder(entry)
        try:
            model = builder(**dict(tm.args))
        except Exception as e:  # the user's code: any error is theirs to fix
            raise RunnerError(f"model {entry.name}: {tm.builder} failed: {_one_line(e)}"
                              ) from None
    if not isinstance(model, nn.Module):
        raise RunnerError(f"model {entry.name}: {tm.builder} returned "
                          f"{type(model).__name__}, not a torch.nn.Module")
    try:
        state = torch.load(tm.weights, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for foreign or truncated files
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise RunnerError(f"model {entry.name}: {tm.weights}: not a readable state_dict "
                          f"({first})") from None
    if not isinstance(state, Mapping):
        raise RunnerError(f"model {entry.name}: {tm.weights} holds {type(state).__name__}, "
                          "not a state_dict (save it with torch.save(model.state_dict(), f))")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        raise RunnerError(f"model {entry.name}: weights do not fit {tm.builder} "
                          f"({str(e).splitlines()[0][:160]})") from None
    model.eval()
    return _quantised(model, ptq)


def _quantised(model: nn.Module, ptq: PtqSpec) -> nn.Module:
    quantised = quantize_model(model, weight_bits=ptq.weight_bits,
                               weight_scheme=ptq.scheme.value, per_channel=ptq.per_channel,
                               exclude=ptq.exclude)
    quantised.eval()
    return quantised


def _module_model(entry: ModelEntry) -> nn.Module:
    """A model given from Python: quantised with its `ptq` (the same as a `torch_model` with
    these weights), or as it is when it already holds quantised layers; never the caller's
    object itself (evaluation moves and clears models)."""
    module = entry.module
    if not isinstance(module, nn.Module):
        raise RunnerError(f"model {entry.name}: module is a {type(module).__name__}, not a "
                          "torch.nn.Module")
    if entry.ptq is not None:
        return _quantised(module, entry.ptq)  # a quantised copy, in eval mode
    if not any(True for _ in iter_quantized_layers(module)):
        raise RunnerError(f"model {entry.name}: a float module needs ptq: {{weight_bits: ...}} "
                          "(how its weights are stored)")
    model = copy.deepcopy(module)
    model.eval()
    return model


def _test_split(sel: DataSelection) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = load_dataset(sel.name, sel.dir, image_size=sel.image_size)
    return dataset.test.images, dataset.test.labels


def _prepare_model(entry: ModelEntry, spec: ExperimentSpec, out_dir: Path, *, dry_run: bool,
                   progress: bool, log: Log | None) -> tuple[nn.Module, torch.Tensor | None,
                                                             torch.Tensor | None, str]:
    """(model, its own test images and labels if any, where it came from)."""
    if entry.kind is ModelSourceKind.CHECKPOINT:
        assert entry.checkpoint is not None
        # the experiment's data directory (--data-dir) also serves a checkpoint whose data moved
        data_dir = spec.data.dir if spec.data is not None else None
        trained = load_checkpoint(entry.checkpoint, data_dir=data_dir)
        return trained.model, trained.dataset.test.images, trained.dataset.test.labels, \
            entry.checkpoint
    if entry.kind is ModelSourceKind.TORCH:
        assert entry.torch_model is not None
        return _torch_model(entry), None, None, entry.torch_model.builder
    if entry.kind is ModelSourceKind.MODULE:
        kind = type(entry.module)
        return _module_model(entry), None, None, \
            f"{kind.__module__}.{kind.__qualname__} (from Python)"
    tspec = entry.train
    assert tspec is not None
    folder = out_dir / "models" / entry.name
    ckpt = folder / "checkpoint.pt"
    if ckpt.is_file():
        trained = load_checkpoint(ckpt)
        if trained.spec.to_dict() != tspec.to_dict():
            raise CheckpointError(f"{ckpt} was written by another training config than model "
                                  f"{entry.name}'s; use another --out directory or remove it")
        if trained.complete or dry_run:
            if log is not None and not trained.complete:
                log(f"{entry.name}: dry run on the checkpoint after epoch {trained.epoch}")
            return trained.model, trained.dataset.test.images, trained.dataset.test.labels, \
                str(ckpt)
    if dry_run:
        # Build the training run (data, model, loss, optimiser, method) without a step, then
        # evaluate the initialised model: a dry run checks everything but trains nothing.
        train(tspec, out_dir / DRY_RUN_DIR / "models" / entry.name, stop_after_epochs=0)
        dataset = load_dataset(tspec.data.name, tspec.data.dir,
                               image_size=tspec.data.image_size, seed=tspec.seed)
        torch.manual_seed(tspec.seed)
        model = build_model_for(tspec, dataset)
        model.eval()
        return model, dataset.test.images, dataset.test.labels, "untrained (dry run)"
    started = time.perf_counter()
    result = train(tspec, folder, progress=progress)
    trained = load_checkpoint(result.checkpoint)
    if log is not None:
        resumed = f", resumed at epoch {result.resumed_at_epoch}" if result.resumed_at_epoch \
            else ""
        log(f"trained {entry.name}: test accuracy {result.test_accuracy:.3f} after "
            f"{tspec.epochs} epochs ({time.perf_counter() - started:.1f} s{resumed}) -> "
            f"{result.checkpoint}")
    return trained.model, trained.dataset.test.images, trained.dataset.test.labels, \
        str(result.checkpoint)


def prepare_models(spec: ExperimentSpec, out_dir: Path, *, dry_run: bool = False,
                   progress: bool = False, log: Log | None = None) -> list[LoadedModel]:
    """Every model of the experiment, trained or loaded, with its test data."""
    shared: tuple[torch.Tensor, torch.Tensor] | None = None
    if spec.data is not None:
        shared = _test_split(spec.data)
    limit = spec.data.test_images if spec.data is not None else None
    if dry_run:
        limit = min(limit or DRY_RUN_TEST_IMAGES, DRY_RUN_TEST_IMAGES)
    out: list[LoadedModel] = []
    with torch_threads_restored():
        for entry in spec.models:
            model, images, labels, source = _prepare_model(entry, spec, out_dir,
                                                           dry_run=dry_run, progress=progress,
                                                           log=log)
            if shared is not None:
                images, labels = shared
            assert images is not None and labels is not None
            if limit is not None:
                images, labels = images[:limit], labels[:limit]
            model.eval()
            clear(model)
            layers = tuple(name for name, _ in iter_quantized_layers(model))
            if not layers:
                raise RunnerError(f"model {entry.name} has no quantised layers")
            out.append(LoadedModel(entry.name, model, images.contiguous(),
                                   labels.contiguous(), model_hash(model),
                                   data_hash(images, labels), layers, source))
    return out



def architecture_hash(model: nn.Module) -> str:
    """SHA-256 of a model's structure and its tensors' names, dtypes and shapes, not their
    values: two models with the same hash differ only in training (CE versus MCEL)."""
    h = hashlib.sha256(repr(model).encode("utf-8"))
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
    return h.hexdigest()
