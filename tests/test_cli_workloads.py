"""`memsim train` and `memsim eval` end to end on a tiny config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from memsim.cli import main

CONFIG = """\
schema_version: 1
name: tiny-cli
model: {name: mlp, weight_bits: 4, options: {width_multiplier: 0.125}}
loss: {kind: mcel, margin: 4, bound: 10}
epochs: 2
batch_size: 128
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    config = folder / "tiny.yaml"
    config.write_text(CONFIG)
    assert main(["train", str(config), "--out", str(folder / "run"), "--no-progress",
                 "--set", "epochs=2"]) == 0
    return folder / "run" / "checkpoint.pt"


def test_train_writes_a_checkpoint_and_rerun_is_a_no_op(
        checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert checkpoint.is_file()
    config = checkpoint.parent.parent / "tiny.yaml"
    code, out, _ = run(capsys, "train", str(config), "--out", str(checkpoint.parent),
                       "--no-progress")
    assert code == 0 and "already complete" in out


def test_eval_reports_accuracy_with_an_interval(checkpoint: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "eval", str(checkpoint), "--device", "symmetric-bitflip",
                         "--knob", "ber=0.02", "--chips", "3", "--trials", "2", "--json",
                         "--per-trial")
    assert code == 0, err
    report = json.loads(out)
    assert report["chips"] == 3 and report["reads"] == 6 and len(report["per_trial"]) == 6
    assert report["accuracy_low"] <= report["accuracy"] <= report["accuracy_high"]
    assert report["clean_accuracy"] > 0.5
    flips = [t["flips_zero_to_one"] + t["flips_one_to_zero"] for t in report["per_trial"]]
    assert all(f > 0 for f in flips)
    # about 2 % of the stored bits
    assert 0.01 < sum(flips) / len(flips) / report["stored_bits"] < 0.03
    _, out2, _ = run(capsys, "eval", str(checkpoint), "--device", "symmetric-bitflip",
                         "--knob", "ber=0.02", "--chips", "3", "--trials", "2", "--json",
                         "--per-trial")
    assert out2 == out  # same seed: same numbers
    code, out, _ = run(capsys, "eval", str(checkpoint), "--device", "sram-14nm", "--knob",
                       "v_rel=0.9", "--chips", "2", "--trials", "1", "--ecc", "secded-72-64")
    assert code == 0 and "chips as clusters" in out


@pytest.mark.parametrize(("argv", "expected"), [
    (["eval", "missing.pt", "--device", "sram-14nm"], "no such checkpoint"),
    (["train", "missing.yaml"], "cannot read"),
    (["train", "{config}", "--set", "loss.kind=focal"], "loss.kind"),
])
def test_bad_input_is_one_line(argv: list[str], expected: str, checkpoint: Path,
                               capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = checkpoint.parent.parent / "tiny.yaml"
    argv = [a.replace("{config}", str(config)) for a in argv]
    code, _, err = run(capsys, *argv, *(["--out", str(tmp_path)] if argv[0] == "train" else []))
    assert code == 2 and expected in err
    assert err.count("\n") == 1


def test_eval_with_a_knob_out_of_range_is_one_line(checkpoint: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "eval", str(checkpoint), "--device", "sram-14nm", "--knob",
                       "v_rel=0.2")
    assert code == 2 and "v_rel" in err and err.count("\n") == 1


def test_eval_of_several_checkpoints_pairs_them_on_the_same_chips(
        checkpoint: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = checkpoint.parent.parent / "tiny.yaml"
    assert main(["train", str(config), "--out", str(tmp_path / "ce"), "--no-progress",
                 "--set", "loss.kind=ce", "--set", "name=tiny-ce"]) == 0
    capsys.readouterr()
    other = tmp_path / "ce" / "checkpoint.pt"
    args = ["--device", "symmetric-bitflip", "--knob", "ber=0.02", "--chips", "3",
            "--trials", "2", "--per-trial"]
    code, out, err = run(capsys, "eval", str(checkpoint), str(other), *args, "--json")
    assert code == 0, err
    report = json.loads(out)
    first, second = report["evaluations"]
    _, alone, _ = run(capsys, "eval", str(checkpoint), *args, "--json")
    assert json.loads(alone) == first  # the first is evaluated as it would be alone
    (diff,) = report["paired_differences"]
    assert (diff["model"], diff["versus"], diff["chips"]) == ("tiny-ce", "tiny-cli", 3)

    def chip_means(e: dict[str, object]) -> list[float]:
        trials = e["per_trial"]
        assert isinstance(trials, list)
        return [sum(t["accuracy"] for t in trials if t["chip"] == c) / 2 for c in range(3)]

    by_chip = [a - b for a, b in zip(chip_means(second), chip_means(first), strict=True)]
    assert diff["difference"] == pytest.approx(sum(by_chip) / 3, abs=1e-12)
    assert diff["low"] <= diff["difference"] <= diff["high"]
    code, out, _ = run(capsys, "eval", str(checkpoint), str(checkpoint), *args[:-1])
    assert code == 0 and f"tiny-cli ({checkpoint}) - tiny-cli ({checkpoint}): +0.0000" in out
    assert main(["train", str(config), "--out", str(tmp_path / "syn"), "--no-progress",
                 "--set", "data.name=synthetic"]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "eval", str(checkpoint), str(tmp_path / "syn" / "checkpoint.pt"),
                       *args)
    assert code == 2 and "its test set differs" in err and err.count("\n") == 1
    code, out, _ = run(capsys, "eval", str(checkpoint), str(other), *args[:4], "--chips", "1",
                       "--json")
    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    one_chip = json.loads(out, parse_constant=no_constants)
    assert one_chip["evaluations"][0]["accuracy_low"] is None
    assert one_chip["paired_differences"][0]["low"] is None
    code, _, err = run(capsys, "eval", str(checkpoint), str(tmp_path / "missing.pt"), *args)
    assert code == 2 and "missing.pt" in err and err.count("\n") == 1


def test_eval_gives_the_same_numbers_on_every_evaluation_path(
        checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", str(checkpoint), "--device", "sram-14nm", "--knob", "v_rel=0.82",
            "--chips", "3", "--trials", "2", "--json", "--per-trial"]
    code, want, err = run(capsys, *base)
    assert code == 0, err
    assert len({t["accuracy"] for t in json.loads(want)["per_trial"]}) > 1
    for extra in (["--reference-path"], ["--reads-per-pass", "1"], ["--reads-per-pass", "4"],
                  ["--torch-device", "cpu"]):
        code, out, err = run(capsys, *base, *extra)
        assert code == 0, err
        assert out == want, extra


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the fallback without CUDA")
def test_eval_falls_back_to_the_cpu_with_a_note(checkpoint: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", str(checkpoint), "--device", "sram-14nm", "--knob", "v_rel=0.85",
            "--chips", "2", "--trials", "1", "--json"]
    _, want, _ = run(capsys, *base)
    code, out, err = run(capsys, *base, "--torch-device", "auto")
    assert code == 0 and out == want
    assert err.strip() == ("torch device auto: torch sees no CUDA device; evaluating on the "
                           "CPU")
    code, out, err = run(capsys, *base, "--torch-device", "cuda")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "torch sees no CUDA device" in err
