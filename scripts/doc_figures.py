"""Regenerate the measured figures the docs quote into one file, docs/figures.md.

    python scripts/doc_figures.py [--only NAME[,NAME...]] [--quick] [--out docs/figures.md]
        [--list]

Each figure is one section of the file, between ``<!-- figure: NAME -->`` and
``<!-- /figure: NAME -->``: what it is, the exact command, when it was measured, the machine
(CPU, cores, Python and library versions, load average at the start and the end) and the
table or numbers. ``--only`` reruns the named figures and keeps every other section of the
file as it is (figures recorded by hand, such as ``ci``, are never rewritten); without it every
figure the script can run is rerun, which takes several minutes. ``--quick`` runs each figure
at a token size (for tests: the numbers then prove the format, not the speed or the accuracy).

Pages that quote a figure put ``<!-- figure: NAME -->`` before the quoted lines, and
tests/test_docs.py checks that they are in the figure's section; rerunning a figure therefore
asks for the pages that quote it to be updated.

Figures (``--list`` prints them): cli-startup (benchmarks/bench_cli.py), kernels
(benchmarks/bench_kernels.py), scale (benchmarks/bench_scale.py), bnn
(benchmarks/bench_bnn.py), sweep (benchmarks/bench_sweep.py), training
(benchmarks/bench_training.py), paired-example (memsim train and memsim eval: CE against MCEL
on the same chips), demo (memsim demo: time and the
report's answer), mcel, mcel-scale, mcel-vgg3 (scripts/mcel_vs_ce.py), suite (the test
suite's time).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import io
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "figures.md"
TRAINING_CONFIG_PAGE = ROOT / "docs" / "workloads.md"
TRAINING_CONFIG_NAME = "digits-bnn-mcel.yaml"

HEADER = """\
# Measured figures

Every measured figure the docs quote, with the command that measures it, when, and on which
machine. `scripts/doc_figures.py` writes this file: `--only NAME` reruns one figure and keeps
the others (see [development](development.md#measured-figures)). A figure whose *measured*
line says "by hand" was measured before this file existed (before 2026-12-04, or earlier that
day) and copied here from the README that quoted it, with its original command; the script
reruns it with `--only NAME`, except a figure whose *machine* line says "recorded by hand".
Speed figures are ratios measured within one run, since the machine is shared and its load
varies.
"""

START = "<!-- figure: {} -->"
END = "<!-- /figure: {} -->"
SECTION = re.compile(
    r"<!-- figure: (?P<name>[a-z0-9-]+) -->\n(?P<body>.*?)<!-- /figure: (?P=name) -->\n?", re.S)


@dataclass(frozen=True)
class Figure:
    """One figure: how to run it (full and quick) and what it says."""

    name: str
    title: str
    what: str
    command: Callable[[bool], str]
    """The command a reader would type, full or quick, as Markdown."""
    run: Callable[[bool], str]
    """Measures and returns the Markdown body (table, output)."""


# --------------------------------------------------------------------------------------------
# Helpers


def load_script(path: Path) -> ModuleType:
    """Import a script that is not in a package (benchmarks/, scripts/) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def call_main(main: Callable[[list[str]], int], argv: list[str]) -> str:
    """Run a `main(argv)` in-process; its stdout, or an error naming the command."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = int(e.code or 0)
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {code}: {err.getvalue().strip()}")
    return out.getvalue()


def memsim_main(argv: list[str]) -> int:
    from memsim.cli import main

    return main(argv)


def code(script: str, args: Sequence[str]) -> str:
    """`.venv/bin/python SCRIPT ARGS` as inline Markdown code."""
    return f"`{' '.join(['.venv/bin/python', *([script] if script else []), shlex.join(args)])}`"


def separate_tables(text: str) -> str:
    """A blank line after every Markdown table, so that a note below it is no table row."""
    out: list[str] = []
    for line in text.rstrip().splitlines():
        if out and out[-1].startswith("|") and line.strip() and not line.startswith("|"):
            out.append("")
        out.append(line)
    return "\n".join(out) + "\n"


def fenced(text: str, lang: str = "text") -> str:
    return f"```{lang}\n{text.rstrip()}\n```\n"


def training_config() -> str:
    """The training config of docs/workloads.md (the block the page writes to a file)."""
    lines = TRAINING_CONFIG_PAGE.read_text(encoding="utf-8").splitlines()
    marker = f"<!-- docs-test: write {TRAINING_CONFIG_NAME} -->"
    start = lines.index(marker) + 2  # the marker, then the ```yaml fence
    end = lines.index("```", start)
    return "\n".join(lines[start:end]) + "\n"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for package in ("torch", "numba", "numpy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{package} {importlib.metadata.version(package)}")
    return (f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, {', '.join(versions)}")


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


# --------------------------------------------------------------------------------------------
# The figures


def cli_startup_args(quick: bool) -> list[str]:
    return ["--markdown", *(["--repeats", "1"] if quick else [])]


def run_cli_startup(quick: bool) -> str:
    bench = load_script(ROOT / "benchmarks" / "bench_cli.py")
    return separate_tables(call_main(bench.main, cli_startup_args(quick)))


def kernels_args(quick: bool) -> list[str]:
    return ["--markdown", *(["--quick"] if quick else [])]


def bench_tables(script: str, args: list[str]) -> str:
    """A benchmark's markdown output, its tables separated."""
    bench = load_script(ROOT / "benchmarks" / script)
    return separate_tables(call_main(bench.main, args))


def run_kernels(quick: bool) -> str:
    return bench_tables("bench_kernels.py", kernels_args(quick))


def scale_args(quick: bool) -> list[str]:
    return ["--markdown", *(["--sizes", "1", "2", "--reads", "2"] if quick else [])]


def run_scale(quick: bool) -> str:
    return bench_tables("bench_scale.py", scale_args(quick))


def run_bnn(quick: bool) -> str:
    return bench_tables("bench_bnn.py", kernels_args(quick))  # the same options


# The commit before issue 17's work on sweep speed: the sweep figure's baseline.
SWEEP_BASELINE_COMMIT = "e934332"


def sweep_args(quick: bool) -> list[str]:
    return ["--rounds", "1", "--set", "chips=1", "--set", "trials=1"] if quick else \
        ["--rounds", "3", "--baseline-src", f"<worktree of {SWEEP_BASELINE_COMMIT}>"]


def run_sweep(quick: bool) -> str:
    bench = load_script(ROOT / "benchmarks" / "bench_sweep.py")
    if quick:
        return fenced(call_main(bench.main, sweep_args(quick)))
    with tempfile.TemporaryDirectory(prefix="sweep-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(tree),
                        SWEEP_BASELINE_COMMIT], cwd=ROOT, check=True, capture_output=True)
        try:
            args = [*sweep_args(quick)[:-1], str(tree)]
            return fenced(call_main(bench.main, args))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           check=False, capture_output=True)


def training_args(quick: bool) -> list[str]:
    if quick:
        return ["--markdown", "--data", "digits", "--model", "mlp", "--width", "0.25",
                "--rounds", "1", "--batches", "2"]
    return ["--markdown", "--rounds", "5", "--batches", "32"]


def run_training(quick: bool) -> str:
    return bench_tables("bench_training.py", training_args(quick))


PAIRED_TRAIN = (
    ["train", TRAINING_CONFIG_NAME, "--out", "runs/bnn-ce-fixed", "--set",
     "name=digits-bnn-ce-fixed", "--set", "loss.kind=ce", "--set", "model.options.output_scale=1",
     "--set", "model.binary_activations=true"],
    ["train", TRAINING_CONFIG_NAME, "--out", "runs/bnn-mcel-fixed", "--set",
     "name=digits-bnn-mcel-fixed", "--set", "model.options.output_scale=1", "--set",
     "model.binary_activations=true"],
)


def paired_eval(quick: bool) -> list[str]:
    chips, trials = ("2", "2") if quick else ("10", "5")
    return ["eval", "runs/bnn-ce-fixed/checkpoint.pt", "runs/bnn-mcel-fixed/checkpoint.pt",
            "--device", "symmetric-bitflip", "--knob", "ber=0.05", "--chips", chips,
            "--trials", trials]


def paired_train(quick: bool) -> list[list[str]]:
    extra = ["--no-progress", *(["--set", "epochs=1"] if quick else [])]
    return [[*argv, *extra] for argv in PAIRED_TRAIN]


def paired_command(quick: bool) -> str:
    lines = [f"memsim {shlex.join(argv)}" for argv in (*paired_train(quick), paired_eval(quick))]
    return (f"{TRAINING_CONFIG_NAME} from docs/workloads.md, then `" + "`; `".join(lines) + "`")


def run_paired_example(quick: bool) -> str:
    with tempfile.TemporaryDirectory(prefix="memsim-figure-") as tmp, contextlib.chdir(tmp):
        Path(TRAINING_CONFIG_NAME).write_text(training_config(), encoding="utf-8")
        for argv in paired_train(quick):
            call_main(memsim_main, argv)
        output = call_main(memsim_main, paired_eval(quick))
    return fenced(f"$ memsim {shlex.join(paired_eval(quick))}\n{output}")


def demo_args(quick: bool, out: str) -> list[str]:
    if quick:
        return ["run", "quickstart", "--out", out, "--dry-run", "--executor", "inprocess",
                "--no-progress"]
    return ["demo", "--out", out, "--no-progress"]


def report_excerpt(report: str) -> str:
    """The report's opening (title to the first picture) and its 'What each device saves'."""
    lines = report.splitlines()
    picture = next((i for i, line in enumerate(lines) if line.startswith("![")), len(lines))
    keep = lines[:picture]
    try:
        start = lines.index("## What each device saves")
    except ValueError:
        return "\n".join(keep) + "\n"
    stop = next((i for i in range(start + 1, len(lines))
                 if lines[i].startswith("![") or lines[i].startswith("## ")), len(lines))
    return "\n".join([*keep, "", *lines[start:stop]]).rstrip() + "\n"


DEMO_PICTURES = ("savings.png", "pareto.png")
"""Copied to docs/demo-<name> by a full run of the demo figure."""


def run_demo(quick: bool) -> str:
    with tempfile.TemporaryDirectory(prefix="memsim-figure-") as tmp, contextlib.chdir(tmp):
        start = time.perf_counter()
        call_main(memsim_main, demo_args(quick, "memsim-demo"))
        seconds = time.perf_counter() - start
        folder = Path("memsim-demo") / ("dry-run" if quick else "")
        report = (folder / "report.md").read_text(encoding="utf-8")
        if not quick:  # the pictures the README and docs show
            for name in DEMO_PICTURES:
                shutil.copyfile(folder / name, ROOT / "docs" / f"demo-{name}")
    return (f"Wall time of the command, in-process: {seconds:.0f} s (the report's first line "
            f"gives the time of models, sweep and aggregation).\n\n"
            f"The report's opening and its savings table:\n\n" + report_excerpt(report))


MCEL_FULL: dict[str, list[str]] = {
    "mcel": ["--seeds", "0", "1", "2", "3", "4"],
    "mcel-scale": ["--weights", "bnn", "--output-scale", "0.25", "0.0625", "--margins", "16",
                   "--seeds", "0", "1", "2", "--bers", "0.01", "0.05", "0.1"],
    "mcel-vgg3": ["--model", "vgg3", "--width", "0.125", "--epochs", "15", "--chips", "4",
                  "--trials", "3", "--margins", "16", "64", "--weights", "bnn", "--seeds", "0",
                  "1", "2", "--bers", "0.01", "0.02", "0.05", "0.1"],
}
# The paper-scale study on mnist-5k (issue 13): hours of training, so its models and
# evaluations are kept in runs/mcel-vgg3 (the script resumes), and a rerun of the figure
# recomputes only what is missing there.
VGG3_MNIST = ["--data", "mnist-5k", "--model", "vgg3", "--width", "0.5", "--epochs", "15",
              "--chips", "5", "--trials", "4", "--output-scale", "learned",
              "--bers", "0.005", "0.01", "0.02"]
MCEL_FULL.update({
    "mcel-pilot": [*VGG3_MNIST, "--losses", "ce", "mcel", "--margins", "16", "32", "64",
                   "--seeds", "100"],
    "mcel-mnist": [*VGG3_MNIST, "--losses", "ce", "mcel", "bitflip", "randbet", "--margins",
                   "16", "32", "--seeds", "0", "1", "2", "3", "4", "--device",
                   "sram-14nm:v_rel=0.84", "--device", "sram-14nm:v_rel=0.82"],
    "mcel-mnist-bits": [*VGG3_MNIST, "--weights", "qnn2", "qnn8", "--losses", "ce", "mcel",
                        "bitflip", "--margins", "32", "--seeds", "0", "1", "2", "3", "4",
                        "--device", "sram-14nm:v_rel=0.84", "--device", "sram-14nm:v_rel=0.82"],
    "mcel-mnist-fixed": [*VGG3_MNIST, "--losses", "ce", "mcel", "--margins", "16", "--weights",
                         "bnn", "--output-scale", "1", "--seeds", "0", "1", "2", "3", "4"],
    "mcel-4bit": [*VGG3_MNIST, "--losses", "ce", "mcel", "--margins", "32", "--weights", "qnn4",
                  "--seeds", "0", "1", "2", "--ranges", "max", "fixed", "learned",
                  "--scale-in-memory", "--codes"],
})
MCEL_FULL["mcel-4bit-digits"] = [
    "--weights", "qnn4", "--output-scale", "learned", "--losses", "ce", "mcel", "--margins", "16",
    "64", "--seeds", "0", "1", "2", "--ranges", "max", "fixed", "learned", "--scale-in-memory",
    "--codes", "--bers", "0.005", "0.01", "0.02", "0.05"]
MCEL_FULL["mcel-4bit-layers"] = [
    "--weights", "qnn4", "--output-scale", "learned", "--losses", "ce", "mcel", "--margins", "64",
    "--seeds", "0", "1", "2", "--bers", "0.02", "--faulty", "all", "hidden", "last"]
MCEL_FULL["mcel-2bit"] = [*VGG3_MNIST, "--losses", "ce", "mcel", "--margins", "32", "--weights",
                          "qnn2", "--seeds", "0", "1", "2", "--ranges", "max", "learned",
                          "--codes"]
KEPT_RUNS = {"mcel-pilot", "mcel-mnist", "mcel-mnist-bits", "mcel-mnist-fixed", "mcel-4bit",
             "mcel-2bit"}
"""Figures whose models stay in runs/mcel-vgg3 between runs."""
MCEL_QUICK = ["--epochs", "1", "--chips", "2", "--trials", "1", "--seeds", "0", "--weights",
              "bnn", "--margins", "16", "--bers", "0.01", "--output-scale", "1"]


def mcel_args(name: str, quick: bool) -> list[str]:
    return [*MCEL_FULL[name], *(MCEL_QUICK if quick else [])]


def run_mcel(name: str, quick: bool) -> str:
    script = load_script(ROOT / "scripts" / "mcel_vs_ce.py")
    with tempfile.TemporaryDirectory(prefix="memsim-figure-") as tmp:
        kept = name in KEPT_RUNS and not quick
        out = os.path.relpath(ROOT / "runs" / "mcel-vgg3") if kept else tmp
        start = time.perf_counter()
        output = call_main(script.main, [*mcel_args(name, quick), "--out", out])
        seconds = time.perf_counter() - start
    took = (f"This run took {seconds:.0f} s, reusing the models and evaluations that "
            "runs/mcel-vgg3 held (see the study's page for the training time)." if kept
            else f"Took {seconds:.0f} s.")
    return f"{took}\n\n{output.rstrip()}\n"


def suite_args(quick: bool) -> list[str]:
    return ["-m", "pytest", "-q", "-p", "no:cacheprovider",
            *(["tests/test_docstrings.py"] if quick else [])]


def run_suite(quick: bool) -> str:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *suite_args(quick)], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - start
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = re.findall(r"(\d+) (passed|failed|skipped|errors?)", last)
    tests = sum(int(n) for n, _ in counts)
    return (f"{tests} tests, {seconds:.0f} s (pytest's summary: `{last.strip('= ')}`; exit "
            f"status {done.returncode})\n")


FIGURES: tuple[Figure, ...] = (
    Figure("cli-startup", "start-up time of the command line",
           "Cold starts of `memsim --help` and `memsim devices list` against `python -c pass` "
           "(quoted in [the command line](cli.md#start-up-time)).",
           lambda q: code("benchmarks/bench_cli.py", cli_startup_args(q)),
           run_cli_startup),
    Figure("kernels", "fault-kernel throughput",
           "Every kernel against `np.copyto` and a naive PyTorch baseline, BER 1e-6 to 1e-1, 1 "
           "and 2 threads (quoted in [memory: speed](memory.md#speed)).",
           lambda q: code("benchmarks/bench_kernels.py", kernels_args(q)),
           run_kernels),
    Figure("scale", "chip reads from 1 to 512 MiB",
           "Time and peak memory of a full-range `sram-14nm` chip read at BER 1e-3, flat and "
           "with per-cell factors, per MiB (quoted in [memory: scale](memory.md#scale)).",
           lambda q: code("benchmarks/bench_scale.py", scale_args(q)),
           run_scale),
    Figure("bnn", "BNN inference on the packed words",
           "`PackedBNN` (XNOR and popcount on the stored bits) against torch's float inference "
           "of the same BNN, one thread (quoted in [networks](workloads.md#bnn-inference-on-the-"
           "packed-words)).",
           lambda q: code("benchmarks/bench_bnn.py", kernels_args(q)), run_bnn),
    Figure("sweep", "evaluations per second of the demo's sweep",
           "The quickstart sweep on one core: the batched path against the per-read reference "
           f"path (`--reference-path`) and the code of {SWEEP_BASELINE_COMMIT} (before issue "
           "17), interleaved (quoted in [experiments](experiments.md#speed-of-a-sweep)).",
           lambda q: code("benchmarks/bench_sweep.py", sweep_args(q)), run_sweep),
    Figure("training", "seconds per training epoch",
           "CE, MCEL, bit-flip injection and RandBET training of the same 4-bit VGG3 on "
           "mnist-5k through `memsim.workloads.training.train`, one thread, interleaved rounds "
           "(quoted in [the MCEL study](mcel-study.md#training-cost)).",
           lambda q: code("benchmarks/bench_training.py", training_args(q)), run_training),
    Figure("paired-example", "CE against MCEL on the same chips",
           "Two BNNs with binary activations and the output scale fixed at 1, trained with CE "
           "and with MCEL, evaluated on the same 10 chips × 5 reads of `symmetric-bitflip` at "
           "5 % flips (quoted in [networks](workloads.md#training)).",
           paired_command, run_paired_example),
    Figure("demo", "the demo's time and answer",
           "`memsim demo`: wall time, and the opening of its report (quoted in the "
           "[README](../README.md) and [experiments](experiments.md#the-demos-answer-read)).",
           lambda q: f"`memsim {shlex.join(demo_args(q, 'memsim-demo'))}`", run_demo),
    *(Figure(name, title, what,
             lambda q, n=name: code("scripts/mcel_vs_ce.py", mcel_args(n, q)),
             lambda q, n=name: run_mcel(n, q))
      for name, title, what in (
          ("mcel", "MCEL against CE, five seeds",
           "The table of [the MCEL study](mcel-study.md)."),
          ("mcel-scale", "MCEL against CE at lower output scales",
           "[The MCEL study: lower output scales](mcel-study.md#lower-output-scales)."),
          ("mcel-vgg3", "MCEL against CE on a small BNN VGG3",
           "[The MCEL study: a VGG3](mcel-study.md#a-vgg3-on-the-digits)."),
          ("mcel-pilot", "the margin pilot on mnist-5k",
           "One seed of MCEL m = 16, 32, 64 against CE, VGG3 on mnist-5k ([the MCEL study: "
           "the paper's scale](mcel-study.md#vgg3-on-real-2828-images-mnist-5k))."),
          ("mcel-mnist", "MCEL against CE, bit-flip training and RandBET, VGG3 on mnist-5k",
           "Five seeds, BNN and 4-bit ([the MCEL study: the paper's scale]"
           "(mcel-study.md#vgg3-on-real-2828-images-mnist-5k))."),
          ("mcel-mnist-bits", "MCEL against CE and bit-flip training, 2- and 8-bit VGG3",
           "Five seeds on mnist-5k ([the MCEL study: the paper's scale]"
           "(mcel-study.md#vgg3-on-real-2828-images-mnist-5k))."),
          ("mcel-mnist-fixed", "MCEL against CE, BNN VGG3 on mnist-5k, output scale 1",
           "Five seeds ([the MCEL study: the paper's scale]"
           "(mcel-study.md#vgg3-on-real-2828-images-mnist-5k))."),
          ("mcel-4bit-digits", "the 4-bit question on the digits MLP",
           "Where MCEL lost on 4-bit weights: the same three ranges on the digits MLP ([the "
           "MCEL study: the 4-bit question](mcel-study.md#the-4-bit-question))."),
          ("mcel-4bit-layers", "where MCEL's 4-bit loss comes from",
           "The digits MLP's 4-bit CE and MCEL m = 64 with all layers, only the hidden ones, or "
           "only the last in the faulty memory ([the MCEL study: the 4-bit question]"
           "(mcel-study.md#the-4-bit-question))."),
          ("mcel-2bit", "2-bit VGG3: the max range against an LSQ step",
           "Where MCEL gained +24 points: CE and MCEL with the max-|w| range and with an LSQ "
           "step, and their codes ([the MCEL study: the 4-bit question]"
           "(mcel-study.md#the-4-bit-question))."),
          ("mcel-4bit", "the 4-bit question",
           "MCEL against CE with the quantiser's range set by max |w|, fixed, or learned "
           "(LSQ), scales stored in the faulty memory, and the weight codes ([the MCEL study: "
           "the 4-bit question](mcel-study.md#the-4-bit-question))."))),
    Figure("suite", "the test suite's time",
           "`pytest` over the whole suite (quoted in the [README](../README.md#development) and "
           "[development](development.md#commands)).",
           lambda q: code("", suite_args(q)), run_suite),
)
BY_NAME = {f.name: f for f in FIGURES}


def section(figure: Figure, quick: bool) -> str:
    load_start = load_average()
    started = datetime.now(UTC)
    body = figure.run(quick)
    lines = [
        START.format(figure.name),
        f"## {figure.name}",
        "",
        textwrap.fill(f"{figure.title[0].upper()}{figure.title[1:]}. {figure.what}", 96,
                      break_on_hyphens=False, break_long_words=False),
        "",
        f"- command: {figure.command(quick)}",
        f"- measured: {started:%Y-%m-%d %H:%M} UTC by `scripts/doc_figures.py --only "
        f"{figure.name}{' --quick' if quick else ''}`",
        f"- machine: {machine()}; load average {load_start} at the start, {load_average()} "
        f"at the end",
    ]
    if quick:
        lines.append("- quick run (`--quick`): token sizes; the numbers show the format only")
    lines += ["", body.rstrip(), END.format(figure.name), ""]
    return "\n".join(lines)


def read_sections(text: str) -> dict[str, str]:
    return {m["name"]: m.group(0).rstrip("\n") + "\n" for m in SECTION.finditer(text)}


def write(out: Path, fresh: dict[str, str]) -> None:
    kept = read_sections(out.read_text(encoding="utf-8")) if out.exists() else {}
    kept.update(fresh)
    order = [f.name for f in FIGURES if f.name in kept] + [n for n in kept if n not in BY_NAME]
    text = HEADER + "".join("\n" + kept[n] for n in order)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", action="append", metavar="NAME[,NAME]",
                        help="rerun only these figures (repeatable); default: all")
    parser.add_argument("--quick", action="store_true",
                        help="token sizes, for tests (the numbers show the format only)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="the file to update (default docs/figures.md)")
    parser.add_argument("--list", action="store_true", help="print the figures' names and exit")
    args = parser.parse_args(argv)
    names = [n.strip() for item in args.only or [] for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; the script runs "
                     f"{', '.join(BY_NAME)} (others in the file are recorded by hand)")
    args.names = names or list(BY_NAME)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for figure in FIGURES:
            print(f"{figure.name}: {figure.title}")
        return 0
    fresh = {}
    for name in args.names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        fresh[name] = section(BY_NAME[name], args.quick)
    write(args.out, fresh)
    print(f"wrote {args.out}: {', '.join(args.names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
