"""The experiment runner: models × devices × operating points × scenarios × placements ×
protections × chips × trials, resumable, on any executor.

`run_experiment(spec, out_dir)` does, in order (one module per job):

1. `models`: trains the models without a complete checkpoint (resumable), loads checkpoints,
   or quantises a user's torch model.
2. `plan`: every evaluation as a store row keyed by what changes accuracy (not energy).
3. The sweep (here): chips come in batches in a fixed order (`stats.AdaptiveChips`); a cell
   asks for the next batch until its interval is narrow enough or its cap is reached, reading
   only finished batches, so the number of chips does not depend on timing or executor. One
   task (`worker.evaluate_chip`) evaluates one chip of (model, device, placement, protection)
   at every operating point and scenario still missing. Each finished row is committed to
   `results.sqlite` as soon as it arrives; a rerun skips stored rows, so a killed run resumes
   and ends with the same numbers.
4. `manifest`: what aggregation needs besides the rows.
5. `aggregation`: accuracy intervals, energy under the deployment, fronts, budgets.
6. `outputs`: the CSVs, the plots and `report.md`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from memsim.experiments.aggregation import SweepResults, aggregate
from memsim.experiments.evaluate import EvaluationOptions
from memsim.experiments.executors import Executor, make_executor, pinned_threads
from memsim.experiments.manifest import write_manifest
from memsim.experiments.models import (
    DRY_RUN_DIR,
    LoadedModel,
    RunnerError,
    import_path,
    prepare_models,
)
from memsim.experiments.outputs import write_outputs
from memsim.experiments.plan import (
    ROW_FORMAT,
    Cell,
    ChipTask,
    Planner,
    PointTask,
    WorkContext,
    adaptive_rule,
    chip_rule,
    device_key,
    protection_of,
    trials_of,
)
from memsim.experiments.records import ChipRecord, CleanResult
from memsim.experiments.store import ResultStore, key_of
from memsim.experiments.worker import evaluate_chip, warm_up
from memsim.files import folder_lock
from memsim.spec.experiment import ExperimentSpec, parse_experiment
from memsim.workloads.bridge import clear
from memsim.workloads.metrics import logit_stats
from memsim.workloads.training import predict

__all__ = ["RunnerError", "SweepResults", "run_experiment"]

Log = Callable[[str], None]


def _progress_bar(enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from memsim.progress import progress_bar

    return progress_bar(0, desc, "eval", smoothing=0.05)


def run_experiment(spec: ExperimentSpec | Mapping[str, Any], out_dir: str | Path, *,
                   executor: str | Executor = "pool", workers: int | None = None,
                   address: str | None = None, threads_per_worker: int = 1,
                   dry_run: bool = False, progress: bool = True,
                   log: Log | None = None, command: str = "",
                   evaluation: EvaluationOptions | None = None,
                   allow_code: bool = False) -> SweepResults:
    """Train or load the models, sweep, store every row, aggregate and write the outputs.

    `spec`: a validated config (`load_experiment`) or a config document built in Python
    (`parse_experiment` validates it; relative paths are from the working directory), whose
    devices may be given as documents or `Device` objects and models as `module:` torch
    modules (docs/python.md).

    `dry_run`: validate and build everything, then evaluate a token amount (every model,
    device, placement and protection at the device's first operating point and scenario, one
    chip, one trial, at most 64 test images; models that would be trained are evaluated
    untrained) into `out_dir/dry-run/`. `command` is quoted in the report. `evaluation`:
    how trials run (reads per batched forward pass, or the per-read reference path); it never
    changes a result. `allow_code`: a config with `torch_model` entries is refused unless it is
    given, since their builders are imported and called (code named by the config runs), in a
    dry run too; nothing else in a config runs code.
    """
    if isinstance(spec, Mapping):
        spec = parse_experiment(spec)
    if not allow_code:
        for m in spec.models:
            if m.torch_model is not None:
                raise RunnerError(
                    f"model {m.name}: torch_model imports and calls {m.torch_model.builder}"
                    f"{f' from {m.torch_model.path}' if m.torch_model.path else ''}, code "
                    "named by the config; pass --allow-code (allow_code=True) if you trust it")
    started = time.perf_counter()
    evaluation = (evaluation or EvaluationOptions()).resolved(log)
    # executor settings are checked first (an unreachable Ray cluster is refused in seconds)
    runner = make_executor(executor, workers, address, threads_per_worker) \
        if isinstance(executor, str) else executor
    base = Path(out_dir)
    out = base / DRY_RUN_DIR if dry_run else base
    out.mkdir(parents=True, exist_ok=True)
    # one run per folder: a second would train and evaluate everything again beside it
    with folder_lock(base, command or "memsim run"):
        return _run_locked(spec, base, out, started, runner=runner,
                           threads_per_worker=threads_per_worker, dry_run=dry_run,
                           progress=progress, log=log, command=command, evaluation=evaluation)


def _run_locked(spec: ExperimentSpec, base: Path, out: Path, started: float, *,
                runner: Executor, threads_per_worker: int, dry_run: bool, progress: bool,
                log: Log | None, command: str, evaluation: EvaluationOptions) -> SweepResults:
    # a user model's folder is importable for the whole run, in this process as in the
    # workers (its module may import lazily), and gone afterwards
    import_paths = [m.torch_model.path for m in spec.models
                    if m.torch_model is not None and m.torch_model.path is not None]
    with contextlib.ExitStack() as held:
        for path in import_paths:
            held.enter_context(import_path(path))
        # opened before any training: a corrupt store is refused first
        store = held.enter_context(ResultStore.in_dir(out))
        models = prepare_models(spec, base, dry_run=dry_run, progress=progress, log=log)
        planner = Planner(spec, models, dry_run=dry_run, torch_threads=threads_per_worker,
                          torch_device=evaluation.torch_device)
        planner.plan()
        clean_keys = _clean_rows(store, models, threads_per_worker, evaluation.torch_device)
        write_manifest(out, spec, models, planner, clean_keys, dry_run)
        context = WorkContext(
            models={m.name: m.model for m in models},
            data={m.data_hash: (m.images, m.labels) for m in models},
            model_data={m.name: m.data_hash for m in models},
            devices=planner.devices,
            evaluation=evaluation)
        reads: dict[str, list[Mapping[str, float]]] = {}
        for cell in planner.cells:
            for plan, knobs in zip(planner.groups[cell.group].memories, cell.memory_knobs,
                                   strict=True):
                reads.setdefault(plan.device, []).append(knobs)
        with pinned_threads(threads_per_worker):
            warm_up(planner.devices, reads, [protection_of(p) for p in spec.protections])
        with runner:
            runner.open(evaluate_chip, context, import_paths)
            _sweep(spec, planner, store, runner, dry_run=dry_run, progress=progress, log=log)
    results = aggregate(out)
    swept_s = time.perf_counter() - started
    paths = write_outputs(out, results, command=command, elapsed_s=swept_s)
    if log is not None:
        log(f"report and pictures in {time.perf_counter() - started - swept_s:.1f} s")
    return replace(results, outputs=tuple(paths))


def _clean_rows(store: ResultStore, models: Sequence[LoadedModel], threads: int,
                torch_device: str = "cpu") -> dict[str, str]:
    """Store the fault-free accuracy and margins of each model; its row key by model."""
    out = {}
    with pinned_threads(threads):
        for m in models:
            inputs = {"row_format": ROW_FORMAT, "kind": "clean", "model_hash": m.model_hash,
                      "data_hash": m.data_hash, "torch_threads": threads,
                      **device_key(torch_device)}
            key = key_of(inputs)
            if store.get(key) is None:
                clear(m.model)
                m.model.to(torch_device)
                stats = logit_stats(predict(m.model, m.images), m.labels)
                store.put(key, inputs, CleanResult(m.name, stats.accuracy, stats.mlm,
                                                   stats.mlm_normalised, stats.n).to_json())
            out[m.name] = key
    return out


_COMMIT_EVERY_S = 1.0
"""Finished rows are committed together about this often: a kill loses at most this much
work, which a rerun evaluates again."""


def _sweep(spec: ExperimentSpec, planner: Planner, store: ResultStore, runner: Executor, *,
           dry_run: bool, progress: bool, log: Log | None) -> None:
    rule = adaptive_rule(chip_rule(spec, dry_run))
    trials = trials_of(spec, dry_run)
    cells_of_key: dict[str, list[Cell]] = {}
    chip_of_key: dict[str, int] = {}
    finished: dict[int, dict[int, list[float]]] = {}
    for cell in planner.cells:
        finished[cell.index] = {}
        for c, key in enumerate(cell.keys):
            cells_of_key.setdefault(key, []).append(cell)
            chip_of_key[key] = c
    stored = set(store.keys())
    for key, cells in cells_of_key.items():
        if key in stored:
            row = store.get(key)
            assert row is not None
            record = ChipRecord.from_json(row.outputs, chip_of_key[key],
                                          f"{store.path}: row {key[:12]}")
            for cell in cells:
                finished[cell.index][chip_of_key[key]] = record.accuracies
    skipped = sum(1 for key in cells_of_key if key in stored)
    bar = _progress_bar(progress, f"{spec.name}{' (dry run)' if dry_run else ''}")
    done = 0
    started = time.perf_counter()
    # rows wait here for one commit about every _COMMIT_EVERY_S (a commit syncs the disk)
    pending: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]] = []
    committed_at = started

    def commit() -> None:
        nonlocal committed_at
        if pending:
            store.put_many(pending)
            pending.clear()
        committed_at = time.perf_counter()

    try:
        while True:
            wanted: dict[tuple[tuple[str, str, str, str], int], dict[str, Cell]] = {}
            for cell in planner.cells:
                batch = rule.next_batch(finished[cell.index])
                if batch is None:
                    continue
                for c in batch:
                    if c not in finished[cell.index]:
                        wanted.setdefault((cell.group, c), {}).setdefault(cell.keys[c], cell)
            if not wanted:
                break
            tasks = []
            for (gkey, c), points in sorted(wanted.items()):
                group = planner.groups[gkey]
                seeds = tuple(m["chip_seed"] for m in planner.inputs[
                    next(iter(points))]["memories"])
                tasks.append(ChipTask(group.model.name, group.memories, c, seeds, trials,
                                      tuple(PointTask(key, cell.memory_knobs)
                                            for key, cell in points.items())))
            n_rows = sum(len(t.points) for t in tasks)
            if bar is not None:
                bar.total += n_rows
                bar.set_postfix_str(f"{skipped} stored before", refresh=False)
                bar.refresh()
            for rows in runner.map_unordered(tasks):
                for key, record in rows:
                    record = replace(record, device_ber=cells_of_key[key][0].device_ber)
                    pending.append((key, planner.inputs[key], record.to_json()))
                    for cell in cells_of_key[key]:
                        finished[cell.index][chip_of_key[key]] = record.accuracies
                    done += 1
                    if bar is not None:
                        bar.update(1)
                if time.perf_counter() - committed_at >= _COMMIT_EVERY_S:
                    commit()
            commit()
    finally:
        try:
            commit()  # what finished before an interrupt or a failure is kept
        finally:
            if bar is not None:
                bar.close()
    if log is not None:
        log(f"{done} evaluations in {time.perf_counter() - started:.2f} s "
            f"({skipped} already stored)")
