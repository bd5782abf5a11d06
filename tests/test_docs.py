"""The docs' commands run, their links resolve, and the figures they quote are in figures.md.

Every ``bash``, ``console`` and ``python`` block of README.md and docs/*.md carries an HTML
comment right before it: ``<!-- docs-test: skip: REASON -->`` or ``<!-- docs-test: run ... -->``
(docs/development.md, "The docs' own tests", lists the clauses). Each page's blocks run in
order, in-process (``memsim.cli.main``, the scripts' ``main``), in a fresh temporary folder
where the repository's data folders are links; long studies run in the quick variant their
comment states. A ``<!-- figure: NAME -->`` comment marks quoted measurements, which must be
in that figure's section of docs/figures.md (written by scripts/doc_figures.py).
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIGURES = ROOT / "docs" / "figures.md"
PAGES = (README, *sorted((ROOT / "docs").glob("*.md")))
LINKED = ("devices", "examples", "configs", "scripts", "benchmarks")
COMMAND_LANGS = ("bash", "console", "python")
MARKER = re.compile(r"^<!-- docs-test: (?P<body>.*) -->$")
FIGURE_MARKER = re.compile(r"^<!-- figure: (?P<name>[a-z0-9-]+)(?: .*)? -->$")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")
ECHO_STATUS = "; echo $?"

GIVEN_RANDOM = "random bytes"
GIVEN_DEMO = "a small dry run of memsim demo"
GIVEN_DEMO_OUTPUTS = "the demo's outputs"
"""CI's `memsim demo` folder when it is fresh (the README's first line ran before the tests),
else the small dry run (`conftest.demo_outputs`)."""
GIVEN_CHECKPOINT = "a BNN trained for 3 epochs"


# --------------------------------------------------------------------------------------------
# Reading the pages


@dataclass
class Block:
    """A fenced block and the HTML comments right above it."""

    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    lines: list[str]
    markers: list[str]  # the bodies of its docs-test comments
    figures: list[str]  # the names of its figure comments

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        j = i - 1
        comments: list[str] = []
        while j >= 0 and lines[j].startswith("<!--"):
            comments.insert(0, lines[j])
            j -= 1
        end = next((k for k in range(i + 1, len(lines)) if lines[k] == "```"), None)
        assert end is not None, f"{page.name}:{i + 1}: an unclosed ``` block"
        markers = [m["body"] for c in comments if (m := MARKER.match(c))]
        figures = [m["name"] for c in comments if (m := FIGURE_MARKER.match(c))]
        found.append(Block(page, i + 1, fence["lang"], lines[i + 1:end], markers, figures))
        i = end + 1
    return found


@dataclass
class Plan:
    """What a block's `run` comment asks for."""

    appends: list[tuple[list[str], list[str]]] = field(default_factory=list)
    replaces: list[tuple[str, str]] = field(default_factory=list)
    givens: list[tuple[str, str]] = field(default_factory=list)
    expects: list[str] = field(default_factory=list)
    status: int = 0
    output: bool = False


def plan_of(block: Block) -> Plan | None:
    """The block's run plan; None when it is skipped or not a command block."""
    (marker,) = block.markers
    if marker.startswith("skip:"):
        assert marker[len("skip:"):].strip(), f"{block.where}: a skip needs its reason"
        return None
    head, *clauses = [c.strip() for c in marker.split(";")]
    assert head == "run", f"{block.where}: expected 'run' or 'skip: REASON', got {marker!r}"
    plan = Plan()
    for clause in clauses:
        word, _, rest = clause.partition(" ")
        if word == "with":
            command, sep, args = rest.partition(":")
            assert sep, f"{block.where}: expected 'with CMD: ARGS', got {clause!r}"
            plan.appends.append((command.split(), shlex.split(args)))
        elif word == "replace":
            old, sep, new = rest.partition(" -> ")
            assert sep, f"{block.where}: expected 'replace OLD -> NEW', got {clause!r}"
            plan.replaces.append((old, new))
        elif word == "given":
            path, sep, kind = rest.partition(": ")
            assert sep and kind in (GIVEN_RANDOM, GIVEN_DEMO, GIVEN_DEMO_OUTPUTS,
                                    GIVEN_CHECKPOINT), (
                f"{block.where}: unknown given {clause!r}")
            plan.givens.append((path, kind))
        elif word == "expect":
            plan.expects += [p.strip() for p in rest.split(",")]
        elif word == "status":
            plan.status = int(rest)
        elif clause == "output":
            plan.output = True
        else:
            raise AssertionError(f"{block.where}: unknown clause {clause!r}")
    return plan


@dataclass
class Command:
    text: str
    output: list[str]  # the lines the page shows after it (console blocks)
    status: int | None  # stated inline with `; echo $?`


def commands_of(block: Block) -> list[Command]:
    if block.lang == "bash":
        return [Command(line.strip(), [], None) for line in block.lines
                if line.strip() and not line.strip().startswith("#")]
    found: list[Command] = []
    for line in block.lines:
        if line.startswith("$ "):
            found.append(Command(line[2:], [], None))
        else:
            assert found, f"{block.where}: output before the first '$ ' command"
            found[-1].output.append(line)
    for c in found:
        if c.text.endswith(ECHO_STATUS):
            c.text = c.text[: -len(ECHO_STATUS)]
            c.status = int(c.output.pop())
    return found


# --------------------------------------------------------------------------------------------
# Running a page


def _run_main(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: --help, usage errors
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return code, out.getvalue()


def _memsim(argv: list[str]) -> tuple[int, str]:
    from memsim.cli import main

    return _run_main(main, argv)


_scripts: dict[Path, ModuleType] = {}


def _script(path: str) -> ModuleType:
    resolved = (ROOT / path).resolve()
    assert resolved.is_relative_to(ROOT) and resolved.is_file(), f"no script {path}"
    if resolved not in _scripts:
        _scripts[resolved] = load_script(resolved)
    return _scripts[resolved]


def run_command(words: list[str], where: str) -> tuple[int, str]:
    """One command line, in-process; the exit status and everything it printed."""
    name = words[0]
    if name in ("memsim", ".venv/bin/memsim"):
        return _memsim(words[1:])
    if name in ("python", "python3", ".venv/bin/python") and words[1].endswith(".py"):
        return _run_main(_script(words[1]).main, words[2:])
    if name == "cp" and len(words) == 3:
        shutil.copy(words[1], words[2])
        return 0, ""
    raise AssertionError(f"{where}: the test cannot run {shlex.join(words)!r}; run it "
                         "in-process here or mark the block as skipped, with the reason")


def normalised(words: list[str]) -> list[str]:
    """`memsim ...` for the CLI, `SCRIPT.py ...` for a script: what `with CMD:` matches."""
    if words[0] == ".venv/bin/memsim":
        return ["memsim", *words[1:]]
    if words[0] in ("python", "python3", ".venv/bin/python"):
        return words[1:]
    return words


@pytest.fixture(scope="session")
def trained_bnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GIVEN_CHECKPOINT: the training config of docs/workloads.md, 3 epochs."""
    out = tmp_path_factory.mktemp("trained-bnn")
    (config,) = [b for b in blocks(ROOT / "docs" / "workloads.md")
                 if "write digits-bnn-mcel.yaml" in b.markers]
    (out / "config.yaml").write_text("\n".join(config.lines) + "\n", encoding="utf-8")
    with contextlib.chdir(out):
        code, printed = _memsim(["train", "config.yaml", "--out", "bnn", "--set", "epochs=3",
                                 "--no-progress"])
    assert code == 0, printed
    return out / "bnn" / "checkpoint.pt"


@dataclass
class Page:
    """A page's run: its folder and the namespace of its python blocks."""

    request: pytest.FixtureRequest
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__docs__"})

    def given(self, path: str, kind: str) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == GIVEN_DEMO_OUTPUTS:
            # links to the demo's files (read only), beside what earlier blocks put there
            target.mkdir(exist_ok=True)
            for item in self.request.getfixturevalue("demo_outputs").iterdir():
                if not (target / item.name).exists():
                    (target / item.name).symlink_to(item, target_is_directory=item.is_dir())
            return
        if target.exists():
            return
        if kind == GIVEN_RANDOM:
            target.write_bytes(random.Random(0).randbytes(65536))
        elif kind == GIVEN_DEMO:
            shutil.copytree(self.request.getfixturevalue("small_demo"), target)
        else:
            shutil.copy(self.request.getfixturevalue("trained_bnn"), target)

    def run(self, block: Block) -> None:
        if block.lang == "yaml":
            self.yaml(block)
            return
        if block.lang not in COMMAND_LANGS:
            return
        plan = plan_of(block)
        if plan is None:
            return
        for path, kind in plan.givens:
            self.given(path, kind)
        if block.lang == "python":
            self.python(block)
        else:
            self.commands(block, plan)
        missing = [p for p in plan.expects if not Path(p).exists()]
        assert not missing, f"{block.where}: expected {missing} to be written"

    def yaml(self, block: Block) -> None:
        text = "\n".join(block.lines) + "\n"
        for marker in block.markers:
            verb, _, path = marker.partition(" ")
            if verb == "write":
                Path(path).write_text(text, encoding="utf-8")
            elif marker.startswith("same as "):
                original = (ROOT / marker[len("same as "):]).read_text(encoding="utf-8")
                assert yaml.safe_load(text) == yaml.safe_load(original), (
                    f"{block.where}: the block no longer says what {marker[8:]} says")
            else:
                raise AssertionError(f"{block.where}: unknown yaml marker {marker!r}")

    def python(self, block: Block) -> None:
        code = compile("\n".join(block.lines) + "\n", block.where, "exec")
        with contextlib.redirect_stdout(io.StringIO()):
            exec(code, self.namespace)

    def commands(self, block: Block, plan: Plan) -> None:
        used_appends: set[int] = set()
        used_replaces: set[int] = set()
        for command in commands_of(block):
            text = command.text
            for k, (old, new) in enumerate(plan.replaces):
                if old in text:
                    text = text.replace(old, new)
                    used_replaces.add(k)
            words = shlex.split(text, comments=True)
            for k, (prefix, args) in enumerate(plan.appends):
                if normalised(words)[: len(prefix)] == prefix:
                    words += args
                    used_appends.add(k)
            code, printed = run_command(words, block.where)
            expected = plan.status if command.status is None else command.status
            assert code == expected, (f"{block.where}: {shlex.join(words)} exited {code}, "
                                      f"expected {expected}:\n{printed[-3000:]}")
            if plan.output:
                got = {line.rstrip() for line in printed.splitlines()}
                shown = [line.rstrip() for line in command.output if line.strip() != "..."]
                missing = [line for line in shown if line not in got]
                assert not missing, (f"{block.where}: {command.text} no longer prints "
                                     f"{missing}; it printed:\n{printed}")
        assert used_appends == set(range(len(plan.appends))), (
            f"{block.where}: a 'with' clause matches no command")
        assert used_replaces == set(range(len(plan.replaces))), (
            f"{block.where}: a 'replace' clause matches no command")


@pytest.fixture
def page_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh folder with links to the repository's data folders; torch's and numba's
    threads restored afterwards (training sets torch's)."""
    import numba
    import torch

    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")  # argparse's help width, for the shown --help
    threads = torch.get_num_threads(), numba.get_num_threads()
    yield tmp_path
    torch.set_num_threads(threads[0])
    numba.set_num_threads(threads[1])


# --------------------------------------------------------------------------------------------
# Tests


def test_every_command_block_is_run_or_skipped_with_a_reason() -> None:
    problems = []
    for page in PAGES:
        for block in blocks(page):
            if block.lang in COMMAND_LANGS:
                if len(block.markers) != 1:
                    problems.append(f"{block.where}: a {block.lang} block needs one "
                                    "'<!-- docs-test: run ... -->' or "
                                    "'<!-- docs-test: skip: REASON -->' right before it")
                    continue
                plan = plan_of(block)  # raises on a malformed comment
                if plan is not None and block.lang == "python":
                    assert replace(plan, givens=[]) == Plan(), (
                        f"{block.where}: python blocks take a bare 'run' and 'given' clauses")
            elif block.markers and block.lang != "yaml":
                problems.append(f"{block.where}: docs-test comments go on command and yaml "
                                "blocks only")
    assert not problems, "\n".join(problems)


RUNNABLE = [p for p in PAGES
            if any(b.lang in COMMAND_LANGS and b.markers and not b.markers[0].startswith("skip:")
                   for b in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_the_commands_of_a_page_run(page: Path, page_folder: Path,
                                    request: pytest.FixtureRequest) -> None:
    runner = Page(request)
    for block in blocks(page):
        runner.run(block)


def test_the_readme_is_the_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; move reference text to docs/"
    text = "\n".join(lines)
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name}" in text, f"README.md does not link docs/{page.name}"
    # .ci/run runs the two lines after the quickstart comment
    start = next(i for i, line in enumerate(lines) if line.startswith("<!-- quickstart:"))
    assert lines[start + 1] == "```bash"
    assert lines[start + 4] == "```", "the Quickstart block must hold exactly two lines"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return {slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_every_relative_link_points_to_a_file_and_heading_that_exist() -> None:
    problems = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # code blocks
        text = re.sub(r"`[^`\n]*`", "", text)  # inline code
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                problems.append(f"{page.name}: {target}: no such file")
            elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
                problems.append(f"{page.name}: {target}: no such heading")
    assert not problems, "\n".join(problems)


def figure_sections(text: str) -> dict[str, list[str]]:
    found = re.finditer(r"<!-- figure: ([a-z0-9-]+) -->\n(.*?)<!-- /figure: \1 -->", text, re.S)
    return {m[1]: [line.rstrip() for line in m[2].splitlines()] for m in found}


def quotes(page: Path) -> list[tuple[str, list[str], int]]:
    """(figure, quoted lines, line number) for each figure comment of a page."""
    lines = page.read_text(encoding="utf-8").splitlines()
    fenced = {b.line - 1: b for b in blocks(page)}
    found = []
    for i, line in enumerate(lines):
        m = FIGURE_MARKER.match(line)
        if not m:
            continue
        j = i + 1
        while lines[j].startswith("<!--"):
            j += 1
        if j in fenced:
            block = fenced[j]
            shown = [out for c in commands_of(block) for out in c.output] \
                if block.lang == "console" else block.lines
        else:
            shown = []
            while j < len(lines) and lines[j].strip():
                shown.append(lines[j])
                j += 1
        found.append((m["name"], [s.rstrip() for s in shown if s.strip() != "..."], i + 1))
    return found


def test_quoted_figures_are_the_measured_ones() -> None:
    sections = figure_sections(FIGURES.read_text(encoding="utf-8"))
    problems = []
    count = 0
    for page in PAGES:
        if page == FIGURES:
            continue
        for name, shown, line in quotes(page):
            count += 1
            if name not in sections:
                problems.append(f"{page.name}:{line}: no figure {name} in docs/figures.md")
                continue
            missing = [s for s in shown if s not in sections[name]]
            if not shown or missing:
                problems.append(f"{page.name}:{line}: not in figure {name}: {missing or shown}")
    assert count >= 4, "the pages quote the kernels, CLI, paired-example and MCEL figures"
    assert not problems, "\n".join(problems)
    for name, body in sections.items():
        assert any(b.startswith("- measured: ") for b in body), f"figure {name}: no date"
        assert any(b.startswith("- command: ") for b in body), f"figure {name}: no command"


def number_pattern(line: str) -> re.Pattern[str]:
    """A line of a quoted output with each number replaced by one of the same format."""
    parts = re.split(r"([+-]?\d+(?:\.\d+)?)", line)
    out = []
    for k, part in enumerate(parts):
        if k % 2 == 0:
            out.append(re.escape(part))
        else:
            decimals = len(part.partition(".")[2])
            out.append(r"[+-]?\d+" + (rf"\.\d{{{decimals}}}" if decimals else ""))
    return re.compile("".join(out) + "$")


@pytest.mark.slow
def test_the_figure_script_writes_what_the_docs_quote(tmp_path: Path) -> None:
    script = _script("scripts/doc_figures.py")
    out = tmp_path / "figures.md"
    code, printed = _run_main(script.main, ["--quick", "--only", "cli-startup,paired-example",
                                            "--out", str(out)])
    assert code == 0, printed
    written = figure_sections(out.read_text(encoding="utf-8"))
    assert set(written) == {"cli-startup", "paired-example"}
    quoted = {name: shown for page in PAGES if page != FIGURES
              for name, shown, _ in quotes(page)}
    for name in written:
        body = written[name]
        assert any(line.startswith("- quick run") for line in body)
        for line in quoted[name]:
            pattern = number_pattern(line)
            assert any(pattern.match(b) for b in body), (
                f"figure {name}: the quick run prints nothing like the quoted {line!r}:\n"
                + "\n".join(body))
    rows = [b for b in written["cli-startup"] if b.startswith("| `python")]
    assert len(rows) == 2 and all(
        re.fullmatch(r"\| `python -m memsim [a-z -]+` \| \d+\.\d{3} \| \d+\.\d{3} \| \d+\.\dx \|",
                     r) for r in rows), rows
    # rewriting some figures keeps the others of the file, untouched
    before = out.read_text(encoding="utf-8")
    paired = before[before.index("<!-- figure: paired-example -->"):]
    script.write(out, {"cli-startup": "<!-- figure: cli-startup -->\nnew\n"
                                      "<!-- /figure: cli-startup -->\n"})
    after = out.read_text(encoding="utf-8")
    assert set(figure_sections(after)) == set(written) and paired.strip() in after
    assert figure_sections(after)["cli-startup"] == ["new"]


def test_the_figure_script_refuses_an_unknown_figure() -> None:
    code, printed = _run_main(_script("scripts/doc_figures.py").main, ["--only", "ci"])
    assert code == 2 and "unknown figure(s) ci" in printed
