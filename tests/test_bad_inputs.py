"""A lasting corpus of bad inputs over every command (issue 16): each case is run through the
CLI in this process and must exit with its status (2: the input must change; 1: a failure
while running), print one line on stderr starting with `error: ` (a spec file with several
problems: one such line per problem), show no traceback, and write nothing outside its own
output folder.

The cases are built from tables: bad device files for every command that names a device, bad
operating points for every command that takes `--knob`, bad counts and seeds for every integer
option, missing and wrong paths for every file argument, bad configs for `run` and `train`,
bad checkpoints for `eval` and broken sweep folders for `pareto`. Cases known to fail today are
marked `xfail(strict=True)`: fixing one turns its mark into a failure, to be removed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from strategies import minimal_doc

from memsim.cli import main


@dataclass(frozen=True)
class Case:
    """argv with `{files}` (the shared bad files) and `{out}` (this case's own folder)."""

    name: str
    argv: tuple[str, ...]
    status: int = 2
    message: str = ""  # a fragment the error line must hold, if given
    known_failure: str = ""  # why it fails today (xfail, strict)
    absent: str = ""  # a path (with `{files}`) that must not exist afterwards


# -- the shared files ------------------------------------------------------------------------

BAD_DEVICE_TEXTS: dict[str, str] = {
    "syntax.yaml": "name: [unclosed\n",
    "tab.yaml": "name: toy\n\tknobs: {}\n",
    "repeated-key.yaml": "name: a\nname: b\n",
    "empty.yaml": "",
    "list.yaml": "- a\n- b\n",
    "scalar.yaml": "42\n",
    "python-tag.yaml": "name: !!python/object/apply:os.system ['true']\n",
    "bomb.yaml": "\n".join(["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]) + "\n",
    "deep.yaml": "x: " + "[" * 300 + "]" * 300 + "\n",
    "extends-loop.yaml": "extends: extends-loop.yaml\nname: loop\n",
    "extends-missing.yaml": "extends: no-such-parent.yaml\nname: orphan\n",
    "extends-up.yaml": "extends: ../up.yaml\nname: climber\n",
    "extends-etc.yaml": "extends: /etc/passwd\nname: reader\n",
}


def _doc_variants() -> dict[str, Any]:
    """Valid YAML, invalid devices: each breaks one rule of the schema."""
    def with_(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        doc = minimal_doc()
        change(doc)
        return doc

    def fault(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda d: d["faults"][0].__setitem__(key, value)

    return {
        "unknown-field.yaml": with_(lambda d: d.__setitem__("colour", "red")),
        "no-name.yaml": with_(lambda d: d.pop("name")),
        "no-knobs.yaml": with_(lambda d: d.pop("knobs")),
        "schema-99.yaml": with_(lambda d: d.__setitem__("schema_version", 99)),
        "probability-2.yaml": with_(fault("failure", {"stuck_at_zero": 2.0, "stuck_at_one": 0})),
        "negative-energy.yaml": with_(lambda d: d["energy"].__setitem__(
            "read_energy_pj_per_bit", -1.0)),
        "nan-mean.yaml": with_(lambda d: d["faults"][0]["fault_fraction"].__setitem__(
            "mean", float("nan"))),
        "string-sigma.yaml": with_(lambda d: d["faults"][0]["fault_fraction"].__setitem__(
            "sigma", "wide")),
        "unknown-curve.yaml": with_(lambda d: d["faults"][0]["fault_fraction"].__setitem__(
            "kind", "spline")),
        "unknown-knob-of.yaml": with_(lambda d: d["faults"][0]["fault_fraction"].__setitem__(
            "of", "temperature")),
        "unknown-mechanism.yaml": with_(fault("kind", "gremlins")),
        "range-reversed.yaml": with_(lambda d: d["knobs"]["vdd"].__setitem__(
            "range", [1.0, 0.5])),
        "nominal-outside.yaml": with_(lambda d: d["knobs"]["vdd"].__setitem__("nominal", 2.0)),
        "bits-per-cell-9.yaml": with_(lambda d: d.__setitem__("cell", {"bits_per_cell": 9})),
        "faults-not-list.yaml": with_(lambda d: d.__setitem__("faults", {"a": 1})),
    }


def _write_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in BAD_DEVICE_TEXTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "latin1.yaml").write_bytes("name: caf\u00e9\n".encode("latin-1"))
    (folder / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    for name, doc in _doc_variants().items():
        (folder / name).write_text(yaml.safe_dump(doc), encoding="utf-8")
    (folder / "dir.yaml").mkdir(exist_ok=True)
    (folder / "weights.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "empty.bin").write_bytes(b"")
    (folder / "garbage.npz").write_bytes(b"not a zip file at all")
    (folder / "garbage.pt").write_bytes(b"\x80\x02not a checkpoint")
    (folder / "truncated.pt").write_bytes(b"PK\x03\x04" + bytes(100))
    np.savez(folder / "foreign.npz", x=np.arange(5))
    (folder / "not-a-sweep").mkdir(exist_ok=True)
    (folder / "bad-manifest").mkdir(exist_ok=True)
    (folder / "bad-manifest" / "manifest.json").write_text("{not json", encoding="utf-8")
    bad_configs = {
        "config-syntax.yaml": "name: [x\n",
        "config-empty.yaml": "",
        "config-list.yaml": "- 1\n",
        "config-repeated.yaml": "name: a\nname: b\n",
        "config-bomb.yaml": BAD_DEVICE_TEXTS["bomb.yaml"],
        "config-unknown-field.yaml": "schema_version: 1\nname: x\nflavour: sweet\n",
        "train-escape.yaml": ("schema_version: 1\nname: ../../escape\ndata: {name: digits}\n"
                              "model: {name: mlp, weight_bits: 1}\nepochs: 1\n"),
    }
    for name, text in bad_configs.items():
        (folder / name).write_text(text, encoding="utf-8")
    _import_files(folder)


IMPORT_FILES = {
    "short.bin": bytes(16),
    "bad.hex": b"00 ff\n0g\n",
    "odd.hex": b"abc",
    "no-bit.csv": b"v_rel,stuck_at\n0.8,1\n",
    "no-direction.csv": b"v_rel,bit\n0.8,3\n",
    "far.csv": b"v_rel,bit,stuck_at\n0.8,99999,1\n",
    "stuck-2.csv": b"v_rel,bit,stuck_at\n0.8,3,2\n",
    "fields.csv": b"v_rel,bit,stuck_at\n0.8,3\n",
    "list.csv": b"v_rel,bit,stuck_at\n0.8,3,1\n",
    "address.csv": b"address,bit,stuck_at\n0x10,3,1\n",
}


def _import_files(folder: Path) -> None:
    """Inputs of `memory import`: weights.bin (4096 bytes) serves as a bitmap too."""
    from memsim.memory.replay import FaultMaps

    for name, data in IMPORT_FILES.items():
        (folder / name).write_bytes(data)
    none = np.zeros((2, 8 * 4096), dtype=bool)
    FaultMaps("v_rel", np.array([0.8, 0.9]), none, none).save(folder / "one-chip.npz")


DEVICE_FILES = sorted([*BAD_DEVICE_TEXTS, *_doc_variants(), "latin1.yaml", "binary.yaml",
                       "dir.yaml", "missing.yaml"])
CONFIG_FILES = ["config-syntax.yaml", "config-empty.yaml", "config-list.yaml",
                "config-repeated.yaml", "config-bomb.yaml", "config-unknown-field.yaml",
                "missing.yaml", "dir.yaml", "binary.yaml"]


# -- the cases -------------------------------------------------------------------------------

F = "{files}"
INJECT = ("memory", "inject", "--device", "sram-14nm", "--knob", "v_rel=0.9", "--in",
          f"{F}/weights.bin", "--out", "{out}/read.bin")
CHARACTERISE = ("memory", "characterise", "--device", "sram-14nm", "--sweep", "v_rel=0.9",
                "--cells", "4096", "--out", "{out}/maps.npz")
EVAL = ("eval", f"{F}/golden.pt", "--device", "sram-14nm", "--knob", "v_rel=0.9",
        "--chips", "1", "--trials", "1")


def _device_cases() -> Iterator[Case]:
    for name in DEVICE_FILES:
        device = f"{F}/{name}"
        yield Case(f"show/{name}", ("devices", "show", device))
        yield Case(f"validate/{name}", ("devices", "validate", device))
        yield Case(f"at/{name}", ("devices", "at", device))
        yield Case(f"plot/{name}", ("devices", "plot", device, "--out", "{out}/p.png"))
        yield Case(f"check/{name}", ("devices", "check", device))
        yield Case(f"inject/{name}", (*INJECT[:2], "--device", device, *INJECT[4:]))
        yield Case(f"characterise/{name}",
                   (*CHARACTERISE[:2], "--device", device, *CHARACTERISE[4:]))
        yield Case(f"eval/{name}", (*EVAL[:2], "--device", device, *EVAL[4:]))


BAD_KNOBS = ["v_rel=0.5", "v_rel=7", "v_rel=nan", "v_rel=inf", "v_rel=-inf", "v_rel=abc",
             "v_rel", "=0.9", "bogus=1", "v_rel=0.9=1", "v_rel=", "v_rel=1e999"]


def _knob_cases() -> Iterator[Case]:
    for knob in BAD_KNOBS:
        yield Case(f"at/knob {knob}", ("devices", "at", "sram-14nm", "--knob", knob))
        yield Case(f"plot/knob {knob}",
                   ("devices", "plot", "sram-14nm", "--knob", knob, "--out", "{out}/p.png"))
        yield Case(f"inject/knob {knob}", (*INJECT[:4], "--knob", knob, *INJECT[6:]))
        yield Case(f"eval/knob {knob}", (*EVAL[:4], "--knob", knob, *EVAL[6:]))
    for sweep in ["v_rel=0.5", "v_rel=", "v_rel", "bogus=0.9", "v_rel=0.9,abc", "=0.9",
                  "v_rel=nan"]:
        yield Case(f"characterise/sweep {sweep}",
                   (*CHARACTERISE[:4], "--sweep", sweep, *CHARACTERISE[6:]))
    yield Case("plot/sweep bogus", ("devices", "plot", "sram-14nm", "--sweep", "bogus",
                                    "--out", "{out}/p.png"))


NOT_INTEGERS = ["abc", "1.5", "", "0x10", "1e3"]


def _integer_cases() -> Iterator[Case]:
    options: list[tuple[str, tuple[str, ...], list[str]]] = [
        ("inject", INJECT, ["--chip-seed", "--seed", "--interleave", "--protect-msbs",
                            "--map-offset", "--bits-per-cell"]),
        ("characterise", CHARACTERISE, ["--cells", "--chip-seed", "--seed"]),
        ("eval", EVAL, ["--chips", "--trials", "--seed", "--interleave", "--protect-msbs",
                        "--reads-per-pass"]),
        ("run", ("run", "quickstart", "--out", "{out}/run"),
         ["--workers", "--threads-per-worker", "--reads-per-pass"]),
        ("demo", ("demo", "--out", "{out}/demo"),
         ["--workers", "--threads-per-worker", "--reads-per-pass"]),
    ]
    for command, base, names in options:
        for option in names:
            for text in NOT_INTEGERS:
                yield Case(f"{command}/{option} {text!r}", (*base, f"{option}={text}"))
            yield Case(f"{command}/{option} -1", (*base, f"{option}=-1"))
    for command, base, option in [("inject", INJECT, "--seed"),
                                  ("inject", INJECT, "--chip-seed"),
                                  ("characterise", CHARACTERISE, "--seed"),
                                  ("characterise", CHARACTERISE, "--chip-seed"),
                                  ("eval", EVAL, "--seed")]:
        yield Case(f"{command}/{option} 2**64", (*base, f"{option}={2**64}"))
    for option in ["--chips", "--trials", "--reads-per-pass"]:
        yield Case(f"eval/{option} 0", (*EVAL, f"{option}=0"))
    for option in ["--workers", "--threads-per-worker"]:
        yield Case(f"run/{option} 0", ("run", "quickstart", "--out", "{out}/run",
                                       f"{option}=0"))
    yield Case("characterise/--cells 0", (*CHARACTERISE[:6], "--cells", "0",
                                          *CHARACTERISE[8:]))
    for option, value in [("--interleave", "0"), ("--protect-msbs", "9"),
                          ("--protect-msbs", "-2"), ("--bits-per-cell", "4")]:
        yield Case(f"inject/{option} {value}", (*INJECT, option, value))
    for option, value in [("--interleave", "0"), ("--protect-msbs", "99")]:
        yield Case(f"eval/{option} {value}", (*EVAL, option, value))


SWEEP_MESSAGES = {"garbage-store": "not a readable memsim results store",
                  "garbage-manifest": "manifest.json: unreadable",
                  "bad-row": "is not JSON objects: the store is corrupted",
                  "bad-accuracy": "not a clean evaluation"}


def _path_cases() -> Iterator[Case]:
    inject_in = INJECT.index("--in") + 1
    for name in ["missing.bin", "dir.yaml"]:
        argv = list(INJECT)
        argv[inject_in] = f"{F}/{name}"
        yield Case(f"inject/--in {name}", tuple(argv))
    for name in ["missing.npz", "garbage.npz", "foreign.npz", "dir.yaml"]:
        yield Case(f"inject/--fault-map {name}",
                   (*INJECT[:2], *INJECT[4:], "--fault-map", f"{F}/{name}"))
    for a, b in [("missing.bin", "weights.bin"), ("weights.bin", "missing.bin"),
                 ("weights.bin", "empty.bin"), ("dir.yaml", "weights.bin")]:
        yield Case(f"diff/{a} {b}", ("memory", "diff", f"{F}/{a}", f"{F}/{b}"))
    for name in ["missing.pt", "garbage.pt", "truncated.pt", "dir.yaml", "weights.bin",
                 *BROKEN_CHECKPOINTS]:
        yield Case(f"eval/checkpoint {name}", ("eval", f"{F}/{name}", *EVAL[2:]),
                   message=BROKEN_CHECKPOINTS.get(name, ""))
    for name in ["missing", "not-a-sweep", "bad-manifest", "weights.bin", "garbage-store",
                 "garbage-manifest", "bad-row", "bad-accuracy"]:
        yield Case(f"pareto/{name}", ("pareto", f"{F}/{name}"), message=SWEEP_MESSAGES.get(
            name, "no sweep here"))
    yield Case("eval/--data-dir missing", (*EVAL, "--data-dir", f"{F}/no-such-folder"))
    yield Case("run/--data-dir missing", ("run", "quickstart", "--out", "{out}/run",
                                          "--data-dir", f"{F}/no-such-folder"))
    # an output path that is a file where a folder is needed
    yield Case("run/--out a file", ("run", "quickstart", "--out", f"{F}/weights.bin"))
    yield Case("demo/--out a file", ("demo", "--out", f"{F}/weights.bin"))
    yield Case("inject/--out a folder", (*INJECT[:-1], f"{F}/not-a-sweep"),
               message="is a folder; name the file to write")
    for command, base in (("inject", INJECT), ("characterise", CHARACTERISE),
                          ("plot", ("devices", "plot", "sram-14nm", "--out", "{out}/p.png"))):
        yield Case(f"{command}/--out in a missing folder",
                   (*base[:-1], "{out}/no/such/folder/x.bin"), message="no such folder",
                   absent="{out}/no")
    yield Case("plot/--out a folder", ("devices", "plot", "sram-14nm", "--out", f"{F}/dir.yaml"),
               message="is a folder")


# golden.pt with one field broken (name: (field, value, what the error says))
BROKEN_CHECKPOINTS = {
    "epoch-text.pt": "epoch '3' is not an integer >= 0",
    "epoch-negative.pt": "epoch -1 is not an integer >= 0",
    "history-not-list.pt": "history is not a list",
    "history-entry.pt": "history entry 0 is not a record of epoch, loss",
    "history-text.pt": "history entry 0 is not a record of epoch, loss",
    "no-history.pt": "checkpoint lacks 'history'",
}


def _broken_checkpoints(folder: Path) -> None:
    import torch

    good = torch.load(folder / "golden.pt", weights_only=True)
    record = {"epoch": 1, "loss": 0.5, "train_accuracy": 0.9, "test_accuracy": 0.8,
              "seconds": 1.0}
    changes: dict[str, tuple[str, Any]] = {
        "epoch-text.pt": ("epoch", "3"), "epoch-negative.pt": ("epoch", -1),
        "history-not-list.pt": ("history", {"a": 1}),
        "history-entry.pt": ("history", [{"epoch": 1, "lr": 0.1}]),
        "history-text.pt": ("history", [{**record, "loss": "low"}]),
    }
    for name, (key, value) in changes.items():
        torch.save({**good, key: value}, folder / name)
    torch.save({k: v for k, v in good.items() if k != "history"}, folder / "no-history.pt")


# user builders (with --allow-code): a syntax error, a raise at import, a raise when called
USER_MODULES = {
    "user_syntax_for_memsim.py": "def make(:\n",
    "user_raises_for_memsim.py": "raise RuntimeError('no GPU here')\n",
    "user_builder_raises_for_memsim.py": "def make(**kw):\n    raise ValueError('bad width')\n",
}
BUILDER_CONFIGS = {
    "builder-syntax.yaml": ("user_syntax_for_memsim:make", "importing user_syntax_for_memsim "
                                                           "failed: SyntaxError"),
    "builder-import-raises.yaml": ("user_raises_for_memsim:make",
                                   "failed: RuntimeError: no GPU here"),
    "builder-raises.yaml": ("user_builder_raises_for_memsim:make",
                            "user_builder_raises_for_memsim:make failed: ValueError: bad width"),
    "builder-missing.yaml": ("no_such_module_for_memsim:make", "cannot import"),
    "builder-not-callable.yaml": ("os:sep", "has no function sep"),
}


def _builder_files(folder: Path) -> None:
    import torch

    for name, text in USER_MODULES.items():
        (folder / name).write_text(text, encoding="utf-8")
    torch.save({}, folder / "net.pt")
    for name, (builder, _) in BUILDER_CONFIGS.items():
        (folder / name).write_text(
            "schema_version: 1\ndata: {name: digits, test_images: 20}\nmodels:\n"
            f"  - name: mine\n    torch_model: {{builder: '{builder}', weights: net.pt}}\n"
            "    ptq: {weight_bits: 4}\ndevices: [{device: sram-14nm}]\nchips: 1\n"
            "deployment: throughput\n", encoding="utf-8")


def _config_cases() -> Iterator[Case]:
    for name in CONFIG_FILES:
        yield Case(f"run/{name}", ("run", f"{F}/{name}", "--out", "{out}/run"))
        yield Case(f"run --dry-run/{name}", ("run", f"{F}/{name}", "--out", "{out}/run",
                                             "--dry-run"))
        yield Case(f"train/{name}", ("train", f"{F}/{name}", "--out", "{out}/train"))
    for override in ["nokey", "=1", "chips=[unclosed", "chips=-1", "chips=0", "trials=abc",
                     "devices=[]", "models=7", "seed=-1", "bogus.path=1", "name=../../x"]:
        yield Case(f"run/--set {override}", ("run", "quickstart", "--out", "{out}/run",
                                             "--set", override))
    # runs/<name> under the working folder: a name with a path in it would write outside
    yield Case("train/a name that climbs out", ("train", f"{F}/train-escape.yaml"),
               message="name: expected a name of letters", absent="{out}/../escape")
    for name, (_, message) in BUILDER_CONFIGS.items():
        yield Case(f"run --allow-code/{name}", ("run", f"{F}/{name}", "--out", "{out}/run",
                                                "--allow-code", "--executor", "inprocess"),
                   message=message)
    yield Case("run/a corrupt store", ("run", "quickstart", "--out", f"{F}/garbage-store"),
               message="not a readable memsim results store",
               absent=f"{F}/garbage-store/models")  # refused before training
    for command in ["nope", "devices nope", "memory nope"]:
        yield Case(f"usage/{command}", tuple(command.split()))
    yield Case("usage/run without --out", ("run", "quickstart"))
    yield Case("usage/unknown config", ("run", "no-such-config", "--out", "{out}/run"))
    yield Case("usage/executor and address", ("run", "quickstart", "--out", "{out}/run",
                                              "--address", "h:1"))
    for address, status, message in (("127.0.0.1:1", 1, "cannot reach Ray at 127.0.0.1:1"),
                                     ("nohost", 2, "--address expects HOST:PORT"),
                                     ("h:99999", 2, "--address expects HOST:PORT")):
        yield Case(f"run/--address {address}", ("run", "quickstart", "--out", "{out}/run",
                                                "--executor", "ray", "--address", address),
                   status=status, message=message, absent="{out}/run")
    yield Case("usage/inprocess with workers", ("demo", "--out", "{out}/demo", "--executor",
                                                "inprocess", "--workers", "2"))
    yield Case("usage/torch device", (*EVAL, "--torch-device", "tpu"))


IMPORT = ("memory", "import", "--knob", "v_rel", "--harsher", "lower", "--out",
          "{out}/maps.npz")


def _import_cases() -> Iterator[Case]:
    bitmap = ("--written", "1", f"{F}/weights.bin=0.8")
    listed = ("--cells", "32768")
    for name, argv, message in [
        ("missing bitmap", (*bitmap[:2], f"{F}/missing.bin=0.8"), "missing.bin: no such file"),
        ("missing list", (*listed, f"{F}/missing.csv"), "missing.csv: no such file"),
        ("a folder", (*bitmap[:2], f"{F}/dir.yaml=0.8"), "dir.yaml: not a file"),
        ("size against --cells", (*bitmap, "--cells", "1000"), "1000 cells need 125 bytes"),
        ("sizes differ", (*bitmap, f"{F}/short.bin=0.9"), "short.bin: 16 bytes, "),
        ("empty bitmap", (*bitmap[:2], f"{F}/empty.bin=0.8"), "an empty bitmap"),
        ("bad hex", (*bitmap[:2], f"{F}/bad.hex=0.8"), "line 2: 'g' is not a hex digit"),
        ("odd hex", (*bitmap[:2], f"{F}/odd.hex=0.8"), "3 hex digits"),
        ("binary as hex", ("--format", "hex", *bitmap), "not hex text"),
        ("value twice", (*bitmap, f"{F}/weights.bin=0.80"), "v_rel=0.8 (stuck-at-0) of chip "
                                                            "0 is given twice"),
        ("list value twice", (*listed, f"{F}/list.csv", f"{F}/list.csv=0.8"), "given twice"),
        ("bitmap and list", (*bitmap, f"{F}/list.csv"), "given twice"),
        ("no pattern", (f"{F}/weights.bin=0.8",), "which pattern was written"),
        ("no value", ("--written", "1", f"{F}/weights.bin"), "needs its knob value"),
        ("value not a number", ("--written", "1", f"{F}/weights.bin=high"), "finite number"),
        ("value inf", ("--written", "1", f"{F}/weights.bin=inf"), "finite number"),
        ("written 2", (f"{F}/weights.bin=0.8,written=2",), "written= expects 0 or 1"),
        ("chip -1", ("--written", "1", f"{F}/weights.bin=0.8,chip=-1"), "chip= expects"),
        ("chip 1 alone", ("--written", "1", f"{F}/weights.bin=0.8,chip=1"),
         "chip 0 is missing"),
        ("no bit column", (*listed, f"{F}/no-bit.csv"), "needs a column 'bit'"),
        ("no direction column", (*listed, f"{F}/no-direction.csv"), "failure direction"),
        ("no knob column", (*listed, "--knob", "vdd", f"{F}/list.csv"), "a column 'vdd'"),
        ("bit out of range", (*listed, f"{F}/far.csv"), "bit 99999 is outside"),
        ("stuck_at 2", (*listed, f"{F}/stuck-2.csv"), "stuck_at must be 0 or 1"),
        ("short row", (*listed, f"{F}/fields.csv"), "line 2: 2 fields, the header has 3"),
        ("address without word size", (*listed, f"{F}/address.csv=0.8"), "--word-bits"),
        ("address past the cells", (*listed, "--word-bits", "4096", f"{F}/address.csv=0.8"),
         "bit 65539 is outside"),
        ("list without cells", (f"{F}/list.csv",), "--cells N"),
        ("not a csv", (*listed, "--format", "csv", f"{F}/binary.yaml"), "binary.yaml"),
        ("--values not numbers", (*listed, "--values", "0.7,low", f"{F}/list.csv"),
         "--values: expected numbers"),
    ]:
        yield Case(f"import/{name}", (*IMPORT, *argv), message=message)
    for option in ("--cells", "--array-bits", "--word-bits"):
        yield Case(f"import/{option} 0", (*IMPORT, *bitmap, option, "0"))
    yield Case("import/--out in a missing folder", (*IMPORT[:-1], "{out}/no/maps.npz",
                                                    *bitmap), message="no such folder")
    for name, argv, message in [
        ("--chip 1 of one chip", ("--chip", "1"), "no chip 1; the file holds one chip (0)"),
        ("--chip -1", ("--chip", "-1"), "expected an integer"),
    ]:
        yield Case(f"inject/{name}", (*INJECT[:2], *INJECT[4:], "--fault-map",
                                      f"{F}/one-chip.npz", *argv), message=message)
    yield Case("inject/--chip with --device", (*INJECT, "--chip", "0"),
               message="--chip picks a chip of a --fault-map file")


def _known_failures() -> dict[str, str]:
    """Cases that fail today, with why; each is an xfail(strict=True)."""
    return {}


def all_cases() -> list[Case]:
    known = _known_failures()
    cases = [*_device_cases(), *_knob_cases(), *_integer_cases(), *_path_cases(),
             *_config_cases(), *_import_cases()]
    return [Case(c.name, c.argv, c.status, c.message, known.get(c.name, ""), c.absent)
            for c in cases]


CASES = all_cases()


def _params() -> list[Any]:
    return [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True,
                                                                reason=c.known_failure)]
                         if c.known_failure else []) for c in CASES]


def _broken_sweeps(folder: Path, sweep: Path) -> None:
    """Copies of a real sweep with its store or manifest broken."""
    for name in ("garbage-store", "garbage-manifest", "bad-row", "bad-accuracy"):
        shutil.copytree(sweep, folder / name)
    (folder / "garbage-store" / "results.sqlite").write_bytes(b"SQLite format 3\x00" + bytes(200))
    (folder / "garbage-manifest" / "manifest.json").write_text("{\"format\": [", "utf-8")
    # the store's rows: results(key, inputs, outputs), outputs holding the accuracy
    for name, value in (("bad-row", "'{not json'"),
                        ("bad-accuracy", "json_set(outputs, '$.accuracy', 'high')")):
        with sqlite3.connect(folder / name / "results.sqlite") as db:
            db.execute(f"UPDATE results SET outputs = {value}")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory,
          small_sweep: tuple[Path, Path, Any]) -> Path:
    from sweeps import golden_checkpoint_file

    folder = tmp_path_factory.mktemp("bad-inputs")
    _write_files(folder)
    golden_checkpoint_file(folder / "golden.pt")
    _broken_checkpoints(folder)
    _builder_files(folder)
    _broken_sweeps(folder, small_sweep[1])
    return folder


def test_the_corpus_is_large_and_its_names_are_unique() -> None:
    assert len(CASES) >= 300
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_one_clean_line(case: Case, files: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = sorted(os.listdir(files))
    argv = [a.replace("{files}", str(files)).replace("{out}", str(out)) for a in case.argv]
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's usage errors
        status = int(e.code or 0)
    _, err = capsys.readouterr()
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), err
    assert err.endswith("\n") and (len(lines) == 1 or case.name.split("/")[-1].startswith(
        ("config-", "unknown-", "no-", "schema-", "probability-", "nan-", "string-"))), err
    assert status == case.status, err
    if case.message:
        assert case.message in err
    assert sorted(os.listdir(files)) == before  # nothing written beside the inputs
    if case.absent:
        assert not Path(case.absent.replace("{files}", str(files)).replace(
            "{out}", str(out))).exists()
    assert not os.listdir(cwd)  # nor in the working folder


def test_extends_outside_the_folder_needs_the_global_flag(
        files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (files.parent / "up.yaml").write_text(yaml.safe_dump(minimal_doc()), encoding="utf-8")
    try:
        child = str(files / "extends-up.yaml")
        assert main(["devices", "validate", child]) == 2
        assert "lies outside" in capsys.readouterr().err
        assert main(["--extends-anywhere", "devices", "validate", child]) == 0
        assert "ok: " in capsys.readouterr().out
        assert main(["devices", "validate", child]) == 2  # for that command only
    finally:
        (files.parent / "up.yaml").unlink()
