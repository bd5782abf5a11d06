"""The command line's conventions: exit statuses, help and an example for everything, a fast
`--help` that imports no numerics, and the start-up benchmark (see docs/cli.md)."""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import load_script

import memsim.cli
from memsim.cli import build_parser, main
from memsim.errors import MemsimError, RunFailure
from memsim.experiments.executors import ExecutorError, ExecutorFailure

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numba", "matplotlib", "scipy")
NO_HELP = {"-h", "--help", "--version"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse: usage errors and --help
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str) -> None:
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("error: "), err


# --- help and examples ----------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
              ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under `parser` (itself included) with its command path."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*path, name))


def _is_leaf(parser: argparse.ArgumentParser) -> bool:
    return not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


def _examples(parser: argparse.ArgumentParser) -> list[list[str]]:
    """The command lines of a parser's epilog (its notes in parentheses left out)."""
    lines = (parser.epilog or "").removeprefix("example:").splitlines()
    return [shlex.split(line)[1:] for line in lines if line.strip().startswith("memsim ")]


def test_every_option_has_help_and_every_command_an_example() -> None:
    commands = list(_commands(build_parser()))
    leaves = [path for path, p in commands if _is_leaf(p)]
    assert ("devices", "at") in leaves and ("memory", "inject") in leaves
    assert {"train", "eval", "run", "pareto", "demo"} <= {path[0] for path in leaves}
    missing = []
    for path, parser in commands:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):  # and its commands' lines
                missing += [f"{' '.join(path)} {a.dest}" for a in action._choices_actions
                            if not (a.help or "").strip()]
            if set(action.option_strings) & NO_HELP:
                continue
            if not (action.help or "").strip():
                missing.append(f"memsim {' '.join(path)}: {action.option_strings or action.dest}")
        if _is_leaf(parser):
            if not (parser.epilog or "").startswith("example: memsim"):
                missing.append(f"memsim {' '.join(path)}: no example epilog")
            assert parser.formatter_class is argparse.RawDescriptionHelpFormatter, path
    assert not missing, "\n".join(missing)


def test_every_example_parses_as_its_own_command() -> None:
    for path, parser in _commands(build_parser()):
        if not _is_leaf(parser):
            continue
        examples = _examples(parser)
        assert examples, path
        for argv in examples:
            assert tuple(argv[:len(path)]) == path, (path, argv)
            args = build_parser().parse_args(argv)  # an unknown option exits 2
            assert args.func is parser.get_default("func")


def test_device_and_memory_examples_run(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The examples that take seconds run as printed (plot, train, eval and sweeps only parse)."""
    parsers = dict(_commands(build_parser()))
    monkeypatch.chdir(ROOT)  # validate's example names a file of the repository
    for action in ("list", "show", "validate", "at", "check"):
        for argv in _examples(parsers["devices", action]):
            code, _, err = run(capsys, *argv)
            assert code == 0, (argv, err)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)) * 16)
    for action in ("characterise", "inject", "diff"):  # chip.npz, then read.bin, then diff
        for argv in _examples(parsers["memory", action]):
            code, _, err = run(capsys, *argv)
            assert code == 0, (argv, err)


# --- start-up: no numerics for help ----------------------------------------------------------


def _heavy_modules_after(code: str) -> list[str]:
    script = (f"import sys\n{code}\n"
              f"print(sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r}))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: list[str] = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("argv", [["--help"], ["devices", "--help"], ["run", "--help"]])
def test_help_imports_no_numerics(argv: list[str]) -> None:
    code = ("from memsim.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass")
    assert _heavy_modules_after(code) == []


def test_package_names_still_import_on_first_use() -> None:
    assert _heavy_modules_after("import memsim, memsim.experiments, memsim.errors") == []
    loaded = _heavy_modules_after(
        "import memsim\nassert memsim.load_device('sram-14nm').name == 'sram-14nm'\n"
        "from memsim import Device, OperatingPoint, builtin_device_files\n"
        "from memsim.experiments import ResultStore, cluster_mean_interval\n"
        "assert 'sram-14nm' in builtin_device_files() and 'Device' in dir(memsim)")
    assert "scipy" in loaded  # the physics really loaded


# --- exit statuses ---------------------------------------------------------------------------


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["devices", "at"], ["devices", "bogus"], ["eval", "x.pt", "--device", "a",
                                                           "--chips", "0"],
                 ["run", "quickstart", "--out", "d", "--workers", "-1"]):
        code, out, err = run(capsys, *argv)
        assert code == 2, argv
        assert out == "" and "Traceback" not in err and err.startswith("error: memsim")


def test_bad_input_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: [unclosed\n", encoding="utf-8")
    for argv in (["devices", "at", "nope"], ["devices", "show", str(tmp_path / "missing.yaml")],
                 ["devices", "at", "sram-14nm", "--knob", "v_rel=7"],
                 ["devices", "show", str(bad_yaml)],
                 ["memory", "diff", str(tmp_path / "a.bin"), str(tmp_path / "b.bin")],
                 # executor options that cannot go together fail before anything trains
                 ["run", "quickstart", "--out", str(tmp_path), "--address", "h:1"],
                 ["demo", "--executor", "inprocess", "--workers", "2"]):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        assert "Traceback" not in err and err.startswith("error: "), err
    assert not (tmp_path / "models").exists()


def test_alias_bombs_and_repeated_keys_are_refused_before_any_work(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    levels = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb.write_text("\n".join(levels) + "\n")
    repeated = tmp_path / "repeated.yaml"
    repeated.write_text("name: a\nname: b\n")
    for path, message in ((bomb, "values once YAML aliases are expanded"),
                          (repeated, "key 'name' given twice")):
        for argv in (["run", str(path), "--out", str(tmp_path / "run")],
                     ["train", str(path), "--out", str(tmp_path / "train")],
                     ["devices", "show", str(path)]):
            code, _, err = run(capsys, *argv)
            assert code == 2, argv
            assert_one_error_line(err)
            assert message in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "train").exists()


def _failing(exc: BaseException) -> object:
    def command(args: argparse.Namespace) -> int:
        raise exc

    return command


def test_run_failure_exits_1_with_one_line(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memsim.cli, "cmd_list", _failing(RunFailure("worker 3 died")))
    code, out, err = run(capsys, "devices", "list")
    assert code == 1 and out == ""
    assert_one_error_line(err)
    assert err == "error: worker 3 died\n"
    assert issubclass(RunFailure, MemsimError) and issubclass(ExecutorFailure, RunFailure)
    assert not issubclass(ExecutorError, RunFailure)  # bad settings are the input's fault


def test_executor_error_exits_1(capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memsim.cli, "cmd_at", _failing(ExecutorFailure("cannot start Ray")))
    code, _, err = run(capsys, "devices", "at", "sram-14nm")
    assert code == 1
    assert_one_error_line(err)


def test_os_error_exits_1(capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    error = PermissionError(13, "Permission denied", "out/report.md")
    monkeypatch.setattr(memsim.cli, "cmd_list", _failing(error))
    code, _, err = run(capsys, "devices", "list")
    assert code == 1
    assert err == "error: out/report.md: Permission denied\n"
    monkeypatch.setattr(memsim.cli, "cmd_list", _failing(OSError(28, "No space left on device")))
    code, _, err = run(capsys, "devices", "list")
    assert code == 1
    assert_one_error_line(err)
    assert "No space left" in err


def test_unwritable_output_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(b"\x00" * 64)

    def disk_full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)  # the atomic writer's last step
    code, _, err = run(capsys, "memory", "inject", "--device", "sram-14nm", "--in", str(src),
                       "--out", str(tmp_path / "read.bin"))
    assert code == 1
    assert_one_error_line(err)
    assert "No space left on device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]  # no temporary left


def test_interrupt_exits_130(capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memsim.cli, "cmd_list", _failing(KeyboardInterrupt()))
    code, _, err = run(capsys, "devices", "list")
    assert code == 130
    assert err == "error: interrupted\n"


def test_broken_pipe_is_no_failure(capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memsim.cli, "cmd_list", _failing(BrokenPipeError(32, "Broken pipe")))
    code, _, err = run(capsys, "devices", "list")
    assert code == 0 and err == ""


# --- the start-up benchmark ------------------------------------------------------------------


def test_bench_cli_prints_a_table_with_ratios() -> None:
    bench = load_script(ROOT / "benchmarks" / "bench_cli.py")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--repeats", "1"]) == 0
    header, *rows, footer = out.getvalue().strip().splitlines()
    assert header.split()[-1] == "ratio"
    assert len(rows) == len(bench.COMMANDS) and "memsim --help" in rows[0]
    assert all(row.endswith("x") and float(row.split()[-1][:-1]) > 0 for row in rows)
    assert "1 cold start" in footer


def _die(context: object, task: object) -> None:
    os._exit(3)  # a worker killed mid-task (out of memory, SIGKILL)


def test_a_dying_worker_is_a_run_failure() -> None:
    from memsim.experiments.executors import make_executor

    with make_executor("pool", workers=1) as pool:
        pool.open(_die, None)
        with pytest.raises(ExecutorFailure, match="a worker process died"):
            list(pool.map_unordered([1, 2]))
