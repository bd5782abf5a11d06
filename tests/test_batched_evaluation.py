"""Batched evaluation (issue 17, item 3): weights decoded straight from the stored bits through a
table, several reads in one forward pass, logit statistics once for all: the same results as
one read at a time through `ModelImage.load`, bit for bit."""

from __future__ import annotations

import copy
import shutil
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from sweeps import golden_checkpoint_file
from torch import nn
from torch.nn import functional as F

from memsim.experiments import evaluate as evaluate_module
from memsim.experiments import worker as worker_module
from memsim.experiments.evaluate import (
    EvaluationError,
    EvaluationOptions,
    MemoryRead,
    Placement,
    ReadStats,
    TrialJob,
    evaluate_model,
    run_trial,
    run_trials,
)
from memsim.experiments.plan import MemoryPlan, device_key
from memsim.experiments.runner import run_experiment
from memsim.experiments.store import ResultStore
from memsim.kernels.decode import copy_bits_, decode_fields_
from memsim.memory.image import MemoryImage
from memsim.memory.protection import ProtectedImage, Protection, protect
from memsim.physics.device import load_device
from memsim.spec.experiment import load_experiment
from memsim.workloads.bridge import ModelImage, clear
from memsim.workloads.layers import QuantizedConv2d, QuantizedLinear, iter_quantized_layers
from memsim.workloads.metrics import logit_stats, logit_stats_stacked
from memsim.workloads.quant import QuantizationError, make_weight_quantizer
from memsim.workloads.training import load_checkpoint, predict, predict_stacked

REPO = Path(__file__).resolve().parent.parent


def _corrupted(image: MemoryImage, seed: int, rate: float = 0.05) -> MemoryImage:
    rng = np.random.default_rng(seed)
    words = image.words.copy()
    flips = rng.random((words.size, 64)) < rate
    words ^= np.packbits(flips, axis=1, bitorder="little").view(np.uint64)[:, 0]
    tail = image.n_bits % 64
    if tail:
        words[-1] &= np.uint64((1 << tail) - 1)
    return image.with_words(words)


# -- the decoding kernel ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 12), n=st.integers(0, 300), offset=st.integers(0, 200),
       rows=st.integers(1, 5), sets=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_decode_fields_reads_every_field_through_the_table(bits: int, n: int, offset: int,
                                                           rows: int, sets: int,
                                                           seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_words = -(-(offset + n * bits) // 64) + 1
    words = rng.integers(0, 2**63, (sets, n_words), dtype=np.uint64) * np.uint64(2) + \
        rng.integers(0, 2, (sets, n_words), dtype=np.uint64)
    table = rng.standard_normal((rows, 1 << bits)).astype(np.float32)
    row_elements = max(1, -(-n // rows))
    out = decode_fields_(words, offset, bits, table, row_elements,
                         np.empty((sets, n), np.float32))
    stream = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")
    for b in range(sets):
        for i in range(n):
            field = stream[b, offset + i * bits: offset + (i + 1) * bits]
            value = int(sum(int(v) << k for k, v in enumerate(field)))
            assert out[b, i] == table[(i // row_elements) % rows, value]


def test_decode_fields_refuses_what_does_not_fit() -> None:
    words = np.zeros((1, 2), np.uint64)
    table = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match="do not fit"):
        decode_fields_(words, 0, 2, table, 1, np.empty((1, 65), np.float32))
    with pytest.raises(ValueError, match="table"):
        decode_fields_(words, 0, 3, table, 1, np.empty((1, 4), np.float32))
    with pytest.raises(ValueError, match="output rows"):
        decode_fields_(words, 0, 2, table, 1, np.empty((2, 4), np.float32))


# -- tables against ModelImage.load -----------------------------------------------------------

QUANTISERS = [
    (1, "symmetric", False, None),
    (4, "symmetric", False, "twos_complement"),
    (4, "symmetric", True, "sign_magnitude"),
    (5, "symmetric", True, "offset_binary"),
    (3, "asymmetric", False, "unsigned"),
    (6, "asymmetric", True, "offset_binary"),
]


def _model(bits: int, scheme: str, per_channel: bool, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)

    def q() -> Any:
        return make_weight_quantizer(bits, scheme=scheme, per_channel=per_channel)

    return nn.Sequential(
        QuantizedConv2d(2, 5, 3, padding=1, bias=True, weight_quantizer=q()), nn.ReLU(),
        nn.Flatten(), QuantizedLinear(5 * 4 * 4, 7, bias=True, weight_quantizer=q()),
        nn.BatchNorm1d(7), nn.Tanh(), QuantizedLinear(7, 3, bias=False, weight_quantizer=q()),
    ).eval()


@pytest.mark.parametrize(("bits", "scheme", "per_channel", "encoding"), QUANTISERS)
def test_table_weights_are_the_loaded_weights(bits: int, scheme: str, per_channel: bool,
                                              encoding: str | None) -> None:
    model = _model(bits, scheme, per_channel)
    mi = ModelImage.of(model, encoding=encoding)
    decoder = mi.decoder
    assert decoder is not None
    images = [_corrupted(mi.image, s) for s in range(3)]
    stacked = decoder.stacked_weights(images)
    layers = dict(iter_quantized_layers(model))
    for b, image in enumerate(images):
        mi.load(model, image)
        for name, layer in layers.items():
            loaded = layer._loaded_weight
            assert loaded is not None
            assert torch.equal(stacked[name][b], loaded), (name, b)
            assert stacked[name][b].dtype == loaded.dtype
        clear(model)


@pytest.mark.parametrize(("bits", "scheme", "per_channel", "encoding"), QUANTISERS)
def test_stacked_forward_gives_each_sets_logits(bits: int, scheme: str, per_channel: bool,
                                                encoding: str | None) -> None:
    model = _model(bits, scheme, per_channel, seed=3)
    with torch.no_grad():  # non-trivial batch-norm statistics
        model[4].running_mean.uniform_(-1, 1)
        model[4].running_var.uniform_(0.5, 2)
    mi = ModelImage.of(model, encoding=encoding)
    x = torch.randn(37, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    images = [_corrupted(mi.image, s) for s in range(5)]
    one_by_one = []
    for image in images:
        mi.load(model, image)
        one_by_one.append(predict(model, x, batch_size=16))
        clear(model)
    for sets in (1, 2, 5):
        got = []
        for start in range(0, 5, sets):
            mi.load_stacked(model, images[start:start + sets])
            got.append(predict_stacked(model, x, len(images[start:start + sets]), batch_size=16))
            clear(model)
        assert torch.equal(torch.cat(got), torch.stack(one_by_one)), sets


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
@pytest.mark.parametrize("groups", [1, 2])
def test_stacked_convolution_is_each_sets_convolution(padding_mode: str, groups: int) -> None:
    torch.manual_seed(5)
    layer = QuantizedConv2d(4, 6, 3, stride=2, padding=1, groups=groups, bias=True,
                            padding_mode=padding_mode,  # type: ignore[arg-type]
                            weight_quantizer=make_weight_quantizer(4)).eval()
    weights = torch.randn(3, *layer.weight.shape)
    x = torch.randn(9, 4, 7, 7)
    layer.load_stacked_weight(weights)
    with torch.no_grad():
        out = layer(torch.cat([x, x, x]))
        for b in range(3):
            assert torch.equal(out[9 * b: 9 * (b + 1)],
                               layer._conv_forward(x, weights[b], layer.bias)), b


def test_stacked_linear_is_each_sets_linear() -> None:
    torch.manual_seed(6)
    for bias in (True, False):
        layer = QuantizedLinear(33, 10, bias=bias, weight_quantizer=make_weight_quantizer(4))
        weights = torch.randn(4, 10, 33)
        x = torch.randn(11, 5, 33)  # extra dimensions pass through as in F.linear
        layer.load_stacked_weight(weights)
        with torch.no_grad():  # as in inference: autograd may compose F.linear otherwise
            out = layer(torch.cat([x] * 4))
            for b in range(4):
                assert torch.equal(out[11 * b: 11 * (b + 1)],
                                   F.linear(x, weights[b], layer.bias))


def test_stacked_weights_are_checked_and_for_inference_only() -> None:
    layer = QuantizedLinear(3, 2, weight_quantizer=make_weight_quantizer(4))
    with pytest.raises(QuantizationError, match=r"shape \(B, \(2, 3\)\)"):
        layer.load_stacked_weight(torch.zeros(2, 3))
    layer.load_stacked_weight(torch.zeros(2, 2, 3))
    assert layer.stacked_sets == 2
    with pytest.raises(QuantizationError, match="inference"):
        layer(torch.zeros(4, 3))  # grad mode on, the latent weight requires grad
    layer.clear_weight_codes()
    assert layer.stacked_sets == 0


def test_no_table_for_float64_weights() -> None:
    model = _model(4, "symmetric", False).double()
    assert ModelImage.of(model).decoder is None


# -- statistics ---------------------------------------------------------------------------------


def test_stacked_statistics_are_each_sets_statistics() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randint(-3, 4, (6, 50, 4), generator=g).float()  # many ties
    logits[2] = torch.randn(50, 4, generator=g)
    labels = torch.randint(0, 4, (50,), generator=g)
    for quantiles in (True, False):
        stacked = logit_stats_stacked(logits, labels, quantiles=quantiles)
        assert stacked == [logit_stats(logits[b], labels, quantiles=quantiles)
                           for b in range(6)]
    with pytest.raises(ValueError, match=r"\(B, N, C\)"):
        logit_stats_stacked(logits[0], labels)


@pytest.mark.parametrize("n", [32767, 40000])
def test_stacked_statistics_of_long_rows_on_two_threads(n: int) -> None:
    """torch splits a mean of one row of 32768 values or more among its threads (in another
    order of additions): the stacked figures still equal each set's own."""
    g = torch.Generator().manual_seed(n)
    logits = torch.randn(3, n, 10, generator=g) * torch.exp2(
        torch.randint(-20, 20, (3, n, 1), generator=g).float())
    labels = torch.randint(0, 10, (n,), generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        stacked = logit_stats_stacked(logits, labels, quantiles=False)
        assert stacked == [logit_stats(logits[b], labels, quantiles=False) for b in range(3)]
    finally:
        torch.set_num_threads(threads)


# -- trials -------------------------------------------------------------------------------------


def _jobs(model: nn.Module) -> list[TrialJob]:
    """Jobs of two memories (first layer in nominal SRAM, the rest in undervolted SRAM with
    SEC-DED) over two chips, two operating points and three trials."""
    sram = load_device("sram-14nm")
    layers = [name for name, _ in iter_quantized_layers(model)]
    edge = ModelImage.of(model, layers=layers[:1])
    rest = ModelImage.of(model, layers=layers[1:])
    protected_edge = protect(edge.image, Protection())
    protected_rest = protect(rest.image, Protection(ecc="secded-72-64"))
    jobs = []
    for c in range(2):
        chips = [protected_edge.chip(sram, 10 + c), protected_rest.chip(sram, 20 + c)]
        for v in (0.85, 0.8):
            reads = [MemoryRead(edge, protected_edge, chips[0], {"v_rel": 1.0}, 10 + c),
                     MemoryRead(rest, protected_rest, chips[1], {"v_rel": v}, 20 + c)]
            jobs += [TrialJob(reads, c, t) for t in range(3)]
    return jobs


@pytest.mark.parametrize("reads_per_pass", [1, 4, 16])
def test_batched_trials_equal_the_reference_path(reads_per_pass: int) -> None:
    model = _model(4, "symmetric", True, seed=8)
    x = torch.randn(40, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(4))
    jobs = _jobs(model)
    want = [run_trial(model, x, labels, j.memories, j.chip, j.trial) for j in jobs]
    assert len({w.accuracy for w in want}) > 1  # the reads differ
    got = run_trials(model, x, labels, jobs, EvaluationOptions(reads_per_pass=reads_per_pass))
    assert got == want
    assert run_trials(model, x, labels, jobs, EvaluationOptions(reference_path=True)) == want
    assert not any(layer.has_loaded_codes for _, layer in iter_quantized_layers(model))


def _count_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The weight sets of every batched forward pass from now on, in order."""
    passes: list[int] = []
    real = evaluate_module.predict_stacked

    def counting(model: nn.Module, images: torch.Tensor, sets: int) -> torch.Tensor:
        passes.append(sets)
        return real(model, images, sets)

    monkeypatch.setattr(evaluate_module, "predict_stacked", counting)
    return passes


def _distinct_reads(jobs: list[TrialJob]) -> int:
    return len({tuple(image.words.tobytes() for image in evaluate_module._read_all(j)[0])
                for j in jobs})


def test_reads_with_the_same_words_are_evaluated_once(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    """Fault-free reads, and a job repeated, give the same words: one set in a forward pass
    for all of them, and still the reference path's trials (their flip counts included)."""
    model = _model(4, "symmetric", True, seed=8)
    x = torch.randn(40, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(4))
    jobs = _jobs(model)
    sram = load_device("sram-14nm")
    whole = ModelImage.of(model)
    protected = protect(whole.image, Protection())
    chip = protected.chip(sram, 5)
    nominal = [TrialJob([MemoryRead(whole, protected, chip, {"v_rel": 1.0}, 5)], 0, t)
               for t in range(5)]
    harsh = [TrialJob([MemoryRead(whole, protected, chip, {"v_rel": 0.8}, 5)], 0, t)
             for t in range(3)]
    jobs = [*jobs, *jobs[:4], *nominal, *harsh, *harsh]
    want = [run_trial(model, x, labels, j.memories, j.chip, j.trial) for j in jobs]
    passes = _count_passes(monkeypatch)
    assert run_trials(model, x, labels, jobs, EvaluationOptions(reads_per_pass=4)) == want
    distinct = _distinct_reads(jobs[:16]) + _distinct_reads(jobs[16:])  # two layouts
    assert _distinct_reads(nominal) == 1
    assert sum(passes) == distinct <= len(jobs) - 4 - 4 - 3
    assert max(passes) <= 4


def test_a_memory_held_at_one_point_is_read_once_per_trial(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """The first layer's nominal SRAM gives the same read at both swept points: it is read
    once per chip and trial, the swept memory at every job."""
    model = _model(4, "symmetric", True, seed=8)
    x = torch.randn(40, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(4))
    jobs = _jobs(model)
    want = [run_trial(model, x, labels, j.memories, j.chip, j.trial) for j in jobs]
    reads: list[int] = []
    real = ProtectedImage.read

    def counting(self: ProtectedImage, *args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ProtectedImage, "read", counting)
    assert run_trials(model, x, labels, jobs) == want
    assert len(reads) == 2 * 3 + len(jobs)  # (chip, trial) pairs of the edge, every job


def test_known_reads_are_not_evaluated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ReadStats` carries the statistics of the reads evaluated to later calls for the same
    model, data and device, and is ignored for others."""
    model = _model(4, "symmetric", True, seed=8)
    x = torch.randn(40, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(4))
    jobs = _jobs(model)
    want = [run_trial(model, x, labels, j.memories, j.chip, j.trial) for j in jobs]
    passes = _count_passes(monkeypatch)
    known = ReadStats(model, x, labels, "cpu")
    assert run_trials(model, x, labels, jobs[:6], known=known) == want[:6]
    first = sum(passes)
    assert run_trials(model, x, labels, jobs, known=known) == want
    assert first > 0
    assert sum(passes) == _distinct_reads(jobs)  # the first six's reads were known
    passes.clear()
    run_trials(model, x, labels, jobs, known=known)
    assert not passes
    # other images or labels (equal values, other tensors) are not what `known` holds
    assert run_trials(model, x.clone(), labels, jobs, known=known) == want
    assert run_trials(model, x, labels.clone(), jobs, known=known) == want
    assert sum(passes) == 2 * _distinct_reads(jobs)
    assert known.fits(model, x, labels, "cpu")
    assert not known.fits(model, x, labels, "cuda")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert not known.fits(model, x, labels, "cpu")
    finally:
        torch.set_num_threads(threads)
    passes.clear()
    small = ReadStats(model, x, labels, "cpu", limit=2)  # a call keeps what it needs
    for _ in range(2):
        assert run_trials(model, x, labels, jobs, known=small) == want
    assert sum(passes) == 2 * _distinct_reads(jobs) and len(small.stats) > 2


def test_a_worker_builds_each_chip_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks that share a chip (device, bits, seed, sweep) get the one built first, which
    reads as a new chip would after its harsher reads; another device object, or eviction
    past the count or the byte budget, builds it again."""
    sram = load_device("sram-14nm")
    image = MemoryImage.pack({"w": (np.arange(-8, 8).repeat(256), "twos_complement", 4)})
    protected = protect(image, Protection())
    plan = MemoryPlan("m", "sram", ("w",), Protection(), (("v_rel", 0.8, 1.0),))
    built: list[int] = []
    real = ProtectedImage.chip

    def counting(self: ProtectedImage, *args: Any) -> Any:
        built.append(1)
        return real(self, *args)

    monkeypatch.setattr(ProtectedImage, "chip", counting)
    chips = worker_module._Chips(size=2, budget=1 << 30)
    chip = chips.get(sram, plan, protected, 1)
    harsh = protected.read(chip, {"v_rel": 0.8}, seed=3)
    assert harsh.raw.bit_errors > 0
    chips.settle()
    assert chips.get(sram, plan, protected, 1) is chip and len(built) == 1
    fresh = real(protected, sram, 1, plan.sweep_dict())
    for knobs in ({"v_rel": 0.9}, {"v_rel": 0.8}):
        assert np.array_equal(protected.read(chip, knobs, seed=4).image.words,
                              protected.read(fresh, knobs, seed=4).image.words)
    other = copy.copy(sram)  # the same spec, another object: its own chip
    assert chips.get(other, plan, protected, 1) is not chip and len(built) == 2
    chip = chips.get(sram, plan, protected, 1)
    for seed in (2, 3):  # past two chips: the least recently used (seed 1) goes
        chips.get(sram, plan, protected, seed)
    chips.settle()
    assert chips.get(sram, plan, protected, 1) is not chip
    tight = worker_module._Chips(size=8, budget=0)  # one chip kept, whatever its size
    first = tight.get(sram, plan, protected, 1)
    tight.get(sram, plan, protected, 2)
    tight.settle()
    assert tight.get(sram, plan, protected, 1) is not first


def test_the_activation_budget_limits_the_sets_per_pass(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    model = _model(4, "symmetric", False)
    x = torch.zeros(40, 2, 4, 4)
    options = EvaluationOptions(reads_per_pass=8)
    assert options.sets_per_pass(model, x) == 8
    # largest activation per image: the convolution's 5 x 4 x 4 = 80 elements
    monkeypatch.setattr(evaluate_module, "ACTIVATION_BUDGET_BYTES", 3 * 4 * 40 * 80 * 3)
    assert options.sets_per_pass(model, x) == 3
    assert EvaluationOptions(reads_per_pass=1).sets_per_pass(model, x) == 1
    with pytest.raises(EvaluationError, match="reads_per_pass"):
        EvaluationOptions(reads_per_pass=0)


def test_evaluate_model_batches_chips_without_changing_results() -> None:
    model = _model(1, "symmetric", False, seed=9)
    x = torch.randn(30, 2, 4, 4, generator=torch.Generator().manual_seed(5))
    labels = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(6))
    placement = [Placement("all", load_device("sram-14nm"), {"v_rel": 0.8})]
    runs = [evaluate_model(model, x, labels, placement, chips=5, trials=2, seed=1,
                           options=options)
            for options in (EvaluationOptions(reference_path=True), EvaluationOptions(),
                            EvaluationOptions(reads_per_pass=3))]
    assert runs[0].trials == runs[1].trials == runs[2].trials
    assert runs[0].accuracy == runs[1].accuracy


# -- the demo ----------------------------------------------------------------------------------


def test_demo_models_give_the_same_rows_batched_and_one_read_at_a_time(tmp_path: Path
                                                                        ) -> None:
    """The demo's four models (trained for 2 epochs instead of 15) on two of its devices, each
    placement and protection, both scenarios: every stored row (per-trial accuracy, margins
    and flip counts) of the batched sweep equals that of the reference path."""
    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    for model in config["models"]:
        model["train"]["epochs"] = 2
    config.update(chips=2, trials=2, devices=[
        {"device": "sram-14nm", "sweep": {"v_rel": [1.0, 0.85, 0.8]}},
        {"device": "dram-ddr3-refresh", "sweep": {"refresh_ms": [64, 16384]}}])
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(config))
    spec = load_experiment(tmp_path / "demo.yaml")
    outs = {}
    for name, options in (("reference", EvaluationOptions(reference_path=True)),
                          ("batched", EvaluationOptions())):
        out = tmp_path / name
        if name == "batched":  # the same trained models
            shutil.copytree(tmp_path / "reference" / "models", out / "models")
        run_experiment(spec, out, executor="inprocess", progress=False, evaluation=options)
        with ResultStore.in_dir(out) as store:
            outs[name] = {row.key: (row.inputs, row.outputs) for row in store.rows()}
    assert outs["batched"] == outs["reference"]
    assert len(outs["reference"]) > 100
    accuracies = {a for _, o in outs["reference"].values()
                  if isinstance(o.get("accuracy"), list) for a in o["accuracy"]}
    assert len(accuracies) > 5  # the rows differ: something was read wrong at harsh points


def test_predict_does_not_depend_on_where_the_images_lie() -> None:
    """The same values at an unaligned address give the same logits (`aligned`)."""
    torch.manual_seed(12)
    model = nn.Sequential(nn.Linear(33, 10)).eval()
    images = torch.randn(64, 33)
    shifted = torch.empty(64 * 33 + 1)[1:].view(64, 33)  # 4 bytes past an aligned address
    shifted.copy_(images)
    assert shifted.data_ptr() % 64
    assert torch.equal(predict(model, shifted), predict(model, images))


# -- the device of the forward passes (issue 17, item 6) ----------------------------------------


def test_auto_resolves_to_the_device_torch_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    options = EvaluationOptions(torch_device="auto", reads_per_pass=3)
    assert options.resolved(lines.append) == EvaluationOptions(torch_device="cpu",
                                                                reads_per_pass=3)
    assert lines == ["torch device auto: torch sees no CUDA device; evaluating on the CPU"]
    with pytest.raises(EvaluationError, match="torch sees no CUDA device"):
        EvaluationOptions(torch_device="cuda").resolved()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert options.resolved(lines.append).torch_device == "cuda"
    assert len(lines) == 1
    with pytest.raises(EvaluationError, match="torch_device must be one of cpu, cuda, auto"):
        EvaluationOptions(torch_device="tpu")


def test_rows_of_another_device_are_keyed_apart() -> None:
    assert device_key("cpu") == {}  # keys from before the option stay valid
    assert device_key("cuda") == {"torch_device": "cuda"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the fallback without CUDA")
def test_a_sweep_on_auto_without_cuda_is_the_cpu_sweep(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(textwrap.dedent(f"""\
        schema_version: 1
        name: tiny
        data: {{name: digits, test_images: 40}}
        models:
          - {{name: a, checkpoint: {golden_checkpoint_file(tmp_path / "a.pt")}}}
        devices:
          - {{device: sram-14nm, sweep: {{v_rel: [0.85, 0.8]}}}}
        chips: 2
        trials: 2
        deployment: always-on
        """))
    lines: list[str] = []
    rows = {}
    for device in ("cpu", "auto"):
        out = tmp_path / device
        run_experiment(load_experiment(config), out, executor="inprocess", progress=False,
                       log=lines.append, evaluation=EvaluationOptions(torch_device=device))
        with ResultStore.in_dir(out) as store:
            rows[device] = {row.key: row.outputs for row in store.rows()}
    assert rows["auto"] == rows["cpu"]
    assert "torch device auto: torch sees no CUDA device; evaluating on the CPU" in lines


@settings(max_examples=80, deadline=None)
@given(n=st.integers(0, 400), src_offset=st.integers(0, 130), dst_offset=st.integers(0, 130),
       seed=st.integers(0, 2**32 - 1))
def test_copy_bits_moves_exactly_the_range(n: int, src_offset: int, dst_offset: int,
                                           seed: int) -> None:
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 2**64, 10, dtype=np.uint64)
    dst = rng.integers(0, 2**64, 10, dtype=np.uint64)
    want = np.unpackbits(dst.view(np.uint8), bitorder="little")
    source = np.unpackbits(src.view(np.uint8), bitorder="little")
    want[dst_offset:dst_offset + n] = source[src_offset:src_offset + n]
    got = copy_bits_(src, src_offset, dst.copy(), dst_offset, n)
    assert np.array_equal(np.unpackbits(got.view(np.uint8), bitorder="little"), want)


def test_copy_bits_refuses_ranges_outside_the_words() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        copy_bits_(np.zeros(1, np.uint64), 10, np.zeros(2, np.uint64), 0, 60)


def test_bnns_run_on_the_read_words_with_the_same_results(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The golden BNN with random batch-norm statistics, whole and split over two memories
    (first layer in SRAM, the rest in undervolted SRAM with SEC-DED): the packed path is taken
    and gives the reference path's trials."""
    trained = load_checkpoint(golden_checkpoint_file(tmp_path / "bnn.pt", seed=5))
    model = trained.model.eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.uniform_(-3, 3)
                module.running_var.uniform_(0.5, 4)
    test = trained.dataset.test
    x, labels = test.images[:100], test.labels[:100]
    jobs = _jobs(model)
    layouts = [[m.image for m in jobs[0].memories]]
    sram = load_device("sram-14nm")
    whole = ModelImage.of(model)
    protected = protect(whole.image, Protection())
    chip = protected.chip(sram, 7)
    jobs += [TrialJob([MemoryRead(whole, protected, chip, {"v_rel": 0.8}, 7)], 9, t)
             for t in range(4)]
    layouts.append([whole])
    for layout in layouts:
        assert evaluate_module._packed_path(model, layout) is not None
    want = [run_trial(model, x, labels, j.memories, j.chip, j.trial) for j in jobs]
    assert len({w.accuracy for w in want}) > 2
    assert run_trials(model, x, labels, jobs) == want
    assert run_trials(model, x, labels, jobs, EvaluationOptions(packed_bnn=False)) == want
    calls: list[int] = []
    real = evaluate_module._PackedPath.logits

    def counting(self: Any, read: Any, images: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return real(self, read, images)

    monkeypatch.setattr(evaluate_module._PackedPath, "logits", counting)
    # the layouts alternate: a read of the first met again after the second is not rerun
    assert run_trials(model, x, labels, [*jobs, *jobs]) == want + want
    assert len(calls) == _distinct_reads(jobs[:-4]) + _distinct_reads(jobs[-4:])


def test_models_the_packed_path_cannot_run_go_through_torch() -> None:
    model = _model(4, "symmetric", False)
    assert evaluate_module._packed_path(model, [ModelImage.of(model)]) is None
