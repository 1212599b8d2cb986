"""Where passes over many rows run: in this process, or across the workers of a Ray cluster.

An engine maps ``work(state, task)`` over ``tasks`` and yields the results in task order;
``state`` is built once per worker by ``setup()`` (an encoder's weights are loaded once per
worker, not once per task). Both are pickled for Ray workers, so they must be module-level
functions (or :func:`functools.partial` of them) over plain arguments: encoder names and
folder paths, not loaded objects. Results in task order make a pass deterministic: the same
tasks give the same output on either engine, whatever finishes first.

Ray workers read the files the tasks name (images, shard folders): on a local cluster they
share this machine's files; a remote cluster (``ray://host:10001``) needs them on storage
every node mounts at the same path, and xmodal installed on every node.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

from xmodal.core.arrays import check_int

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")
ENGINES = ("local", "ray")


class LocalEngine:
    """Runs every task in this process, one after another (the default)."""

    name = "local"
    workers = 1

    def map(self, setup: Callable[[], S], work: Callable[[S, T], R], tasks: Sequence[T]) -> Iterator[R]:
        """``work(state, task)`` for each task, in order, with ``state = setup()`` built once."""
        if not tasks:
            return
        state = setup()
        for task in tasks:
            yield work(state, task)

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class RayEngine:
    """Runs tasks on ``workers`` Ray actors of ``cpus_per_worker`` CPUs each (each actor builds
    its state once). ``address`` is a running cluster (``ray://host:10001``, or ``auto``);
    without one, a local cluster of ``workers * cpus_per_worker`` CPUs is started on entry
    and stopped on exit. Use as a context manager."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, cpus_per_worker: int = 1):
        self.address = address
        self.workers = check_int(workers, "workers", minimum=1)
        self.cpus_per_worker = check_int(cpus_per_worker, "cpus_per_worker", minimum=1)
        self._started = False

    def __enter__(self) -> RayEngine:
        ray = _import_ray()
        if not ray.is_initialized():
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": logging.WARNING,
            }
            if self.address:
                ray.init(address=self.address, **options)
            else:
                ray.init(num_cpus=self.workers * self.cpus_per_worker, **options)
            self._started = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._started:
            _import_ray().shutdown()
            self._started = False

    def map(self, setup: Callable[[], S], work: Callable[[S, T], R], tasks: Sequence[T]) -> Iterator[R]:
        """As :meth:`LocalEngine.map`; at most one task per actor is in flight, so results
        waiting to be consumed in order stay bounded by the number of workers."""
        if not tasks:
            return
        ray = _import_ray()
        if not ray.is_initialized():
            raise RuntimeError("RayEngine.map runs inside `with RayEngine(...) as engine:`")
        from ray.util import ActorPool

        actor = ray.remote(num_cpus=self.cpus_per_worker)(_Worker)
        actors = [actor.remote(setup) for _ in range(min(self.workers, len(tasks)))]
        try:
            yield from ActorPool(actors).map(lambda a, task: a.run.remote(work, task), list(tasks))
        finally:
            for handle in actors:
                ray.kill(handle)


class _Worker:
    """A Ray actor: ``setup()`` once, then ``work(state, task)`` per call."""

    def __init__(self, setup: Callable[[], Any]):
        self.state = setup()

    def run(self, work: Callable[[Any, Any], Any], task: Any) -> Any:
        return work(self.state, task)


Engine = LocalEngine | RayEngine


def make_engine(name: str = "local", *, address: str | None = None, workers: int | None = None) -> Engine:
    """The engine called ``name`` (``local`` or ``ray``); ``address`` and ``workers`` are Ray's
    (default workers: this machine's CPUs)."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    if name == "local":
        if address is not None or workers is not None:
            raise ValueError("--address and --workers are options of --engine ray")
        return LocalEngine()
    return RayEngine(address, workers if workers is not None else os.cpu_count() or 1)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RuntimeError("the Ray engine needs Ray: pip install 'xmodal[ray]' (ray==2.60.0)") from None
    return ray
