"""Executors: run the tasks of a sweep in this process, in a local process pool, or on Ray.

Every executor runs the same function `fn(context, task)` on the same tasks; only where and in
which order they run differs, and each task's result depends only on its inputs (seeds), so
the numbers are the same under every executor. What would otherwise differ is pinned per
worker: torch's intra-op threads (a different thread count sums in a different order) and
numba's threads (for speed; the kernels' results do not depend on them). Results come back in
completion order; callers must not rely on any other.

The context (models, test data, devices) is pickled once and each worker process unpickles it
once and keeps it: the pool's workers read it from a temporary file, Ray workers fetch it as
one object. Workers put the folders in `import_paths` (users' own model code) in front of
`sys.path` first.

Errors: an input error met on a worker comes back as an `ExecutorError` with its line (exit 2);
a failure while running (Ray unreachable, a pool worker that died) is an `ExecutorFailure`
(exit 1).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import multiprocessing
import os
import pickle
import socket
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import Any

from memsim.errors import MemsimError, RunFailure

__all__ = [
    "EXECUTOR_NAMES",
    "Executor",
    "ExecutorError",
    "ExecutorFailure",
    "InProcessExecutor",
    "PoolExecutor",
    "RayExecutor",
    "make_executor",
    "pinned_threads",
]

EXECUTOR_NAMES = ("inprocess", "pool", "ray")
TaskFn = Callable[[Any, Any], Any]


class ExecutorError(MemsimError):
    """Bad executor settings (a worker count, an address without Ray, Ray not installed), or
    an input error that a worker met (sent back as its line): the input's fault, exit 2."""


class ExecutorFailure(ExecutorError, RunFailure):
    """An executor that cannot start (Ray unreachable), a pool worker process that died (out
    of memory, killed), or an executor used before it is opened: a failure while running,
    exit 1."""


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Torch intra-op threads and numba threads set to `threads` for a block, then restored."""
    import numba
    import torch

    old_torch = torch.get_num_threads()
    old_numba = numba.get_num_threads()
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)
        numba.set_num_threads(old_numba)


def _pin(threads: int) -> None:
    import numba
    import torch

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]


def _add_import_paths(paths: Sequence[str]) -> None:
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)


class _ContextPickler(pickle.Pickler):
    """Refuses, by name, a class or function defined in `__main__` where the workers cannot
    import it: a notebook's (its main module has no file for a spawned process to re-import)
    or, on Ray, any script's."""

    def __init__(self, file: Any, executor: str, main_importable: bool) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.executor = executor
        self.main_importable = main_importable

    def reducer_override(self, obj: Any) -> Any:
        if (isinstance(obj, type | types.FunctionType) and obj.__module__ == "__main__"
                and not self.main_importable):
            where = "a notebook or interactive session" if self.executor == "pool" else \
                "the main script"
            raise ExecutorError(
                f"{obj.__qualname__} is defined in {where}, which {self.executor} workers "
                "cannot import: move it into a module file (next to the notebook is enough) "
                "and import it from there, or use executor='inprocess'")
        return NotImplemented


def _pickled(context: Any, executor: str) -> bytes:
    """The context as the workers will unpickle it, or an `ExecutorError` saying why not."""
    main = sys.modules.get("__main__")
    importable = executor == "pool" and getattr(main, "__file__", None) is not None
    buffer = io.BytesIO()
    try:
        _ContextPickler(buffer, executor, importable).dump(context)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ExecutorError(f"the sweep's models and data cannot be sent to {executor} "
                            f"workers ({first}); define the model's classes and functions at "
                            "the top level of a module, or use executor='inprocess'") from None
    return buffer.getvalue()


def _worker_error(e: MemsimError) -> ExecutorError:
    # SpecError and friends do not survive pickling with their own constructors: send the line.
    return ExecutorError(str(e))


class Executor:
    """Runs `fn(context, task)` over tasks: `open`, then `map_unordered`, then `close` (also
    as a context manager); see the module docstring."""

    name = "executor"

    def open(self, fn: TaskFn, context: Any, import_paths: Sequence[str] = ()) -> None:
        """Start the workers with `fn` and `context` (both picklable for the pool and Ray:
        `fn` a module-level function); `import_paths` are folders the workers put in front of
        `sys.path` (the in-process executor leaves that to its caller)."""
        raise NotImplementedError

    def map_unordered(self, tasks: Iterable[Any]) -> Iterator[Any]:
        """The results of the tasks, each as soon as it is done (completion order)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the workers (also after an error or an interrupt)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Sequential, in this process, with the same thread pinning as a worker (`threads`):
    for debugging and tests."""

    name = "inprocess"

    def __init__(self, threads: int = 1) -> None:
        self.threads = _check_count("threads", threads)
        self._fn: TaskFn | None = None
        self._context: Any = None

    def open(self, fn: TaskFn, context: Any, import_paths: Sequence[str] = ()) -> None:
        self._fn, self._context = fn, context

    def map_unordered(self, tasks: Iterable[Any]) -> Iterator[Any]:
        fn = self._fn
        if fn is None:
            raise ExecutorFailure("executor not opened")
        with pinned_threads(self.threads):
            for task in tasks:
                yield fn(self._context, task)

    def close(self) -> None:
        self._fn = self._context = None


# -- local process pool ---------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _exit_with_parent(parent: int) -> None:
    """End this worker when the process that started it is gone (e.g. SIGKILLed, which
    runs no clean-up): otherwise it would wait on the task queue forever."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="memsim-parent-watch", daemon=True).start()


def _pool_init(context_file: str, threads: int, import_paths: Sequence[str],
               fn: TaskFn, parent: int) -> None:
    _exit_with_parent(parent)
    _pin(threads)
    _add_import_paths(import_paths)
    with open(context_file, "rb") as f:
        _WORKER["context"] = pickle.load(f)
    _WORKER["fn"] = fn


def _pool_call(task: Any) -> Any:
    try:
        return _WORKER["fn"](_WORKER["context"], task)
    except MemsimError as e:
        raise _worker_error(e) from None


class PoolExecutor(Executor):
    """Local worker processes (started with `spawn`, so no thread state is inherited):
    `workers` of them (None: all cores), each with `threads` torch and numba threads.

    As with any spawned process, a script that runs a sweep on this executor must do so under
    ``if __name__ == "__main__":`` (workers import the main module)."""

    name = "pool"

    def __init__(self, workers: int | None = None, threads: int = 1) -> None:
        self.workers = _check_count("workers", workers if workers is not None
                                    else (os.cpu_count() or 1))
        self.threads = _check_count("threads", threads)
        self._pool: ProcessPoolExecutor | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def open(self, fn: TaskFn, context: Any, import_paths: Sequence[str] = ()) -> None:
        # The context goes through a file, not the start-up pipe: each worker reads it once,
        # and a worker that dies early cannot leave this process blocked on a full pipe.
        blob = _pickled(context, self.name)
        self._tmp = tempfile.TemporaryDirectory(prefix="memsim-pool-")
        path = os.path.join(self._tmp.name, "context.pickle")
        with open(path, "wb") as f:
            f.write(blob)
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_pool_init,
            initargs=(path, self.threads, tuple(import_paths), fn, os.getpid()))

    def map_unordered(self, tasks: Iterable[Any]) -> Iterator[Any]:
        pool = self._pool
        if pool is None:
            raise ExecutorFailure("executor not opened")
        # A bounded window of submitted tasks: results stream back while the rest wait here.
        window = 4 * self.workers
        pending: set[Future[Any]] = set()
        it = iter(tasks)
        try:
            while True:
                while len(pending) < window:
                    task = next(it, _END)
                    if task is _END:
                        break
                    pending.add(pool.submit(_pool_call, task))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        # rows already stored stay: a rerun resumes from them
                        raise ExecutorFailure(
                            "a worker process died (out of memory, or killed); the rows "
                            "finished so far are stored, rerun to resume") from None
                    yield result
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


_END = object()


# -- Ray ------------------------------------------------------------------------------------


def _ray_call(fn: TaskFn, context_box: list[Any], digest: str, threads: int,
              import_paths: Sequence[str], task: Any) -> Any:
    """Runs on a Ray worker: unpickle the context once per worker process, then the task."""
    _pin(threads)
    if _WORKER.get("digest") != digest:
        ray = _ray()
        _add_import_paths(import_paths)
        # The context travels in a list so that Ray passes the reference instead of the
        # bytes; a worker fetches it once.
        _WORKER["context"] = pickle.loads(ray.get(context_box[0]))
        _WORKER["digest"] = digest
    try:
        return fn(_WORKER["context"], task)
    except MemsimError as e:
        raise _worker_error(e) from None


class RayExecutor(Executor):
    """Tasks on Ray: an existing cluster (`address` HOST:PORT, or "auto"), or a local instance
    started here with `workers` CPUs (all cores by default) and stopped by `close`.

    Each task asks for `threads` CPUs. Workers need memsim installed (on a cluster: the same
    environment on every node, e.g. through Ray's runtime environments)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 threads: int = 1) -> None:
        self.address = address
        self.workers = None if workers is None else _check_count("workers", workers)
        self.threads = _check_count("threads", threads)
        if address is not None and address != "auto":
            _probe(address)
        self._started = False
        self._remote: Any = None
        self._box: list[Any] = []
        self._digest = ""
        self._paths: tuple[str, ...] = ()
        self._fn: TaskFn | None = None

    def open(self, fn: TaskFn, context: Any, import_paths: Sequence[str] = ()) -> None:
        blob = _pickled(context, self.name)  # refused before a cluster is started
        try:
            ray = _ray()
        except ImportError:
            raise ExecutorError("--executor ray needs Ray: pip install 'memsim[ray]' (or "
                                "'ray[default]')") from None
        if not ray.is_initialized():
            try:
                if self.address is None:
                    ray.init(num_cpus=self.workers or os.cpu_count() or 1,
                             include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(address=self.address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = self.address or "a local instance"
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ExecutorFailure(f"cannot start Ray on {where}: {first}") from None
            self._started = True
        self._digest = hashlib.sha256(blob).hexdigest()
        self._box = [ray.put(blob)]
        self._remote = ray.remote(num_cpus=self.threads)(_ray_call)
        self._paths = tuple(import_paths)
        self._fn = fn

    def map_unordered(self, tasks: Iterable[Any]) -> Iterator[Any]:
        ray = _ray()
        task_error = importlib.import_module("ray.exceptions").RayTaskError

        if self._remote is None:
            raise ExecutorFailure("executor not opened")
        pending = [self._remote.remote(self._fn, self._box, self._digest, self.threads,
                                       self._paths, task) for task in tasks]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    yield ray.get(done[0])
                except task_error as e:
                    cause = e.cause if isinstance(e.cause, BaseException) else None
                    if isinstance(cause, MemsimError):
                        raise ExecutorError(str(cause)) from None
                    raise
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)

    def close(self) -> None:
        self._remote = None
        self._box = []
        if self._started:
            _ray().shutdown()
            self._started = False


def _ray() -> Any:
    # Ray is optional (the `ray` extra): imported by name, so neither importing memsim nor
    # type-checking it needs Ray installed.
    return importlib.import_module("ray")


def _check_count(what: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ExecutorError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def _probe(address: str) -> None:
    """Refuse at once a cluster address that is malformed or where nothing listens: Ray itself
    retried a closed port for minutes, printing its own warnings."""
    host, sep, port_text = address.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not host or not 0 < port < 65536:
        raise ExecutorError(f"--address expects HOST:PORT (or auto), got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), port), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise ExecutorFailure(f"cannot reach Ray at {address}: "
                              f"{e.strerror or type(e).__name__}") from None


_PROBE_TIMEOUT_S = 5.0


def make_executor(kind: str, workers: int | None = None, address: str | None = None,
                  threads: int = 1) -> Executor:
    """An executor by name: `inprocess` (one worker), `pool` (default: all cores) or `ray`
    (`address` is for Ray only)."""
    if address is not None and kind != "ray":
        raise ExecutorError("--address is for --executor ray")
    if kind == "inprocess":
        if workers not in (None, 1):
            raise ExecutorError("the in-process executor has one worker")
        return InProcessExecutor(threads)
    if kind == "pool":
        return PoolExecutor(workers, threads)
    if kind == "ray":
        return RayExecutor(address, workers, threads)
    raise ExecutorError(f"unknown executor {kind!r}; valid: {', '.join(EXECUTOR_NAMES)}")
