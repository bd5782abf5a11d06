"""Training: every method runs, checkpoints record the run, resuming equals not stopping;
MCEL's margin and its accuracy under bit flips."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from memsim.errors import MemsimError, SpecError
from memsim.spec.training import TrainSpec, parse_training
from memsim.workloads.bridge import ModelImage, clear
from memsim.workloads.layers import iter_quantized_layers
from memsim.workloads.quant import LearnedStepQuantizer
from memsim.workloads.training import CheckpointError, load_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def spec(method: dict[str, Any] | None = None, **top: Any) -> TrainSpec:
    doc: dict[str, Any] = {
        "schema_version": 1, "name": "tiny", "seed": 5,
        "model": {"name": "mlp", "weight_bits": 4, "options": {"width_multiplier": 0.125}},
        "loss": {"kind": "mcel", "margin": 4, "bound": 10},
        "method": method or {"kind": "plain"},
        "optimizer": {"kind": "adam", "lr": 0.005, "schedule": "cosine"},
        "epochs": 3, "batch_size": 128,
    }
    doc.update(top)
    return parse_training(doc)


def same_weights(a: Path, b: Path) -> bool:
    sa = load_checkpoint(a).model.state_dict()
    sb = load_checkpoint(b).model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("method", [
    {"kind": "plain"},
    {"kind": "bitflip", "device": "sram-14nm", "knobs": {"v_rel": 0.85}, "chips": 2},
    {"kind": "randbet", "ber": 0.01, "clip_weights": 0.1},
])
def test_resuming_gives_the_weights_of_an_uninterrupted_run(tmp_path: Path,
                                                            method: dict[str, Any]) -> None:
    s = spec(method)
    whole = train(s, tmp_path / "whole")
    first = train(s, tmp_path / "split", stop_after_epochs=1)
    assert len(first.history) == 1 and first.resumed_at_epoch == 0
    rest = train(s, tmp_path / "split")
    assert rest.resumed_at_epoch == 1 and len(rest.history) == 3
    assert same_weights(whole.checkpoint, rest.checkpoint)
    assert [h.test_accuracy for h in whole.history] == [h.test_accuracy for h in rest.history]


@pytest.mark.parametrize(("method", "bits"), [
    ({"kind": "gaussian", "sigma": 0.05}, 4),
    ({"kind": "consistency", "lam": 0.01, "eta": 0.1}, 4),
    ({"kind": "plain"}, 1),
    ({"kind": "bitflip", "device": "sram-14nm", "knobs": {"v_rel": 0.8}}, 1),
])
def test_every_method_learns_the_digits(tmp_path: Path, method: dict[str, Any],
                                        bits: int) -> None:
    s = spec(method, model={"name": "mlp", "weight_bits": bits,
                            "options": {"width_multiplier": 0.25}})
    result = train(s, tmp_path / "run")
    assert all(math.isfinite(h.loss) for h in result.history)
    assert result.test_accuracy > 0.5  # ten classes: chance is 0.1


def test_checkpoint_records_the_run_and_loads_back(tmp_path: Path) -> None:
    s = spec(epochs=1)
    result = train(s, tmp_path)
    trained = load_checkpoint(result.checkpoint)
    assert trained.spec.to_dict() == s.to_dict()
    assert trained.epoch == 1 and trained.complete
    assert trained.code_version.startswith("memsim ")
    assert trained.history == result.history
    assert not trained.model.training
    again = train(s, tmp_path)  # finished: nothing to do
    assert again.resumed_at_epoch == 1 and again.history == result.history


def test_bad_checkpoints_and_configs_are_one_line_errors(tmp_path: Path) -> None:
    s = spec(epochs=1)
    result = train(s, tmp_path / "a")
    with pytest.raises(CheckpointError, match="another config"):
        train(spec(epochs=2, seed=6), tmp_path / "a")
    data = result.checkpoint.read_bytes()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    for path in (broken, garbage, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a memsim checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(SpecError, match=r"model\.options\.depth"):
        train(spec(model={"name": "mlp", "options": {"depth": 3}}), tmp_path / "b")
    with pytest.raises(SpecError, match="unknown model"):
        train(spec(model={"name": "alexnet"}), tmp_path / "c")
    with pytest.raises(SpecError, match=r"model\.options\.output_scale.*expected 'learned' or a "
                                        r"number > 0 \(a fixed scale\), got 'fixed'"):
        train(spec(model={"name": "mlp", "options": {"output_scale": "fixed"}}), tmp_path / "c")
    with pytest.raises(SpecError, match="output_scale must be a finite number > 0, got -1"):
        train(spec(model={"name": "mlp", "options": {"output_scale": -1}}), tmp_path / "c")
    with pytest.raises(SpecError, match=r"model\.options\.weight_range.*expected one of max, "
                                        r"fixed, learned, got 'lsq'"):
        train(spec(model={"name": "mlp", "options": {"weight_range": "lsq"}}), tmp_path / "c")
    with pytest.raises(SpecError, match="fixed range needs clip"):
        train(spec(model={"name": "mlp", "options": {"weight_range": "fixed"}}), tmp_path / "c")
    with pytest.raises(MemsimError, match="unknown data set"):
        train(spec(data={"name": "imagenet"}), tmp_path / "d")
    with pytest.raises(MemsimError, match="needs a data directory"):
        train(spec(data={"name": "mnist"}), tmp_path / "e")


def test_mcel_enlarges_the_logit_margin_over_ce(tmp_path: Path) -> None:
    from memsim.workloads.metrics import logit_stats
    from memsim.workloads.training import predict

    stats = {}
    for kind in ("ce", "mcel"):
        s = spec(loss={"kind": kind, "margin": 16, "bound": 100}, epochs=4)
        trained = load_checkpoint(train(s, tmp_path / kind).checkpoint)
        test = trained.dataset.test
        stats[kind] = logit_stats(predict(trained.model, test.images), test.labels)
    assert stats["mcel"].mlm > 1.2 * stats["ce"].mlm
    assert stats["mcel"].mlm_normalised > stats["ce"].mlm_normalised
    assert stats["mcel"].accuracy > 0.8 and stats["ce"].accuracy > 0.8


def test_mcel_beats_ce_under_one_percent_flips_when_the_output_scale_is_fixed(
        tmp_path: Path) -> None:
    # The setting of scripts/mcel_vs_ce.py where the paper's effect shows: a BNN (±1 weights
    # and activations) whose output scale is fixed at 1, so the logit gaps MCEL asks for must
    # come from the stored weights. Over training seeds 0-4 MCEL m=16 led CE by +1.2 to +2.3
    # points at BER 1 % and +5.1 to +5.9 at 5 % (clean: -0.3 to +1.7) on these chips; this is
    # seed 0, the script's default, not a picked one. With a learned scale it does not lead.
    import memsim
    from memsim.experiments.evaluate import Placement, evaluate_model

    device = memsim.load_device("symmetric-bitflip")
    accuracy: dict[tuple[str, float], float] = {}
    for kind in ("ce", "mcel"):
        s = parse_training({
            "schema_version": 1, "name": f"bnn-{kind}", "seed": 0, "data": {"name": "digits"},
            "model": {"name": "mlp", "weight_bits": 1, "binary_activations": True,
                      "options": {"width_multiplier": 0.25, "output_scale": 1.0}},
            "loss": {"kind": kind, "margin": 16, "bound": 100},
            "optimizer": {"kind": "adam", "lr": 0.005, "schedule": "cosine"},
            "epochs": 30, "batch_size": 64})
        trained = load_checkpoint(train(s, tmp_path / kind).checkpoint)
        test = trained.dataset.test
        for ber in (0.01, 0.05):
            ev = evaluate_model(trained.model, test.images, test.labels,
                                [Placement("weights", device, {"ber": ber})],
                                chips=10, trials=5, seed=0)
            accuracy[kind, ber] = ev.accuracy.mean
        accuracy[kind, 0.0] = ev.clean_accuracy
    lead = {ber: accuracy["mcel", ber] - accuracy["ce", ber] for ber in (0.0, 0.01, 0.05)}
    assert lead[0.01] > 0.005, lead
    assert lead[0.05] > lead[0.0] + 0.02, lead  # the errors widen the gap


def test_output_scale_option_is_learned_by_default_or_fixed(tmp_path: Path) -> None:
    scales = {}
    for tag, options in (("default", {}), ("learned", {"output_scale": "learned"}),
                         ("fixed", {"output_scale": 0.5})):
        model = {"name": "mlp", "weight_bits": 4,
                 "options": {"width_multiplier": 0.125, **options}}
        trained = load_checkpoint(train(spec(model=model, epochs=1), tmp_path / tag).checkpoint)
        scales[tag] = (trained.model.scale.learnable,
                       float(trained.model.scale.scale.detach()))
    assert scales["default"] == scales["learned"]
    assert scales["default"][0] and scales["default"][1] != 1.0  # it moved from its start
    assert scales["fixed"] == (False, 0.5)


def test_weight_range_options_train_a_fixed_or_a_learned_step(tmp_path: Path) -> None:
    """``weight_range: fixed`` keeps every layer's step at weight_clip/Q through training;
    ``learned`` (LSQ) trains the steps, which the checkpoint holds; either model's memory
    image loads back to the forward pass it was trained with, bit for bit."""
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    steps = {}
    for tag, options in (("fixed", {"weight_clip": 0.25, "weight_range": "fixed"}),
                         ("learned", {"weight_range": "learned"})):
        model = {"name": "mlp", "weight_bits": 4,
                 "options": {"width_multiplier": 0.25, **options}}
        result = train(spec(model=model, loss={"kind": "ce"}), tmp_path / tag)
        assert result.test_accuracy > 0.5
        trained = load_checkpoint(result.checkpoint).model
        layers = [layer for _, layer in iter_quantized_layers(trained)]
        steps[tag] = [float(layer.weight_codes().scale) for layer in layers]
        image = ModelImage.of(trained)
        with torch.no_grad():
            reference = trained(x)
            image.load(trained, image.image)
            loaded = trained(x)
        clear(trained)
        assert torch.equal(reference, loaded)
        if tag == "learned":
            assert all(layer.weight_step is not None for layer in layers)
            initial = [float(LearnedStepQuantizer(4).initial_step(layer.weight)[0])
                       for layer in layers]
            # trained, not re-derived from the weights
            assert any(abs(a / b - 1) > 0.05 for a, b in zip(steps[tag], initial, strict=True))
    assert steps["fixed"] == [pytest.approx(0.25 / 7)] * len(steps["fixed"])
