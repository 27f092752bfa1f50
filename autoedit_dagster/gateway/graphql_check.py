"""Bounded GraphQL checks for the gateway, run in worker processes so a costly document never stalls it.

`check_document` parses one document (graphql-core, at most `max_tokens` tokens) and measures
each operation with its fragments expanded: depth, aliases, fields, and how often one response
name repeats in one selection set. It returns the operation kinds (`query`, `mutation`,
`subscription`) or the reason the document is refused. `CheckerPool` runs it in a few spawned
processes, so a check never holds the event loop's GIL: health checks and other clients keep
answering while a large document is checked. (Not at a lower CPU priority: on a loaded host a
niced worker was starved past the time bound, measured, and legitimate documents were refused.)

This module imports only graphql-core, so a worker starts in a fraction of a second.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
)


@dataclass(frozen=True)
class GraphQLLimits:
    """Bounds on one GraphQL document; past any of them the request gets 400.

    The Dagster UI's own documents (38 of them, read on 15 of its pages, 1.13.27) are at most
    8 KB, 11 levels deep, 795 fields with fragments expanded, 3 aliases, and repeat one response
    name at most 30 times in one selection set (`__typename` in the inline fragments of a union):
    the bounds leave each of those room at least twice over. Depth, aliases and fields count
    fragments expanded, so spreading a fragment many times adds up. `max_repeats` and
    `max_fields` bound the webserver's validation, which compares the fields sharing a response
    name pairwise (OverlappingFieldsCanBeMerged): 1,000 copies of `__typename` (11 KB) cost it
    ~3 s of CPU, 4,000 ~35 s; within these bounds it is at most ~120k comparisons (~0.6 s).
    """

    max_bytes: int = 256 * 1024
    max_tokens: int = 30_000
    max_depth: int = 25
    max_aliases: int = 100
    max_fields: int = 2_500
    max_repeats: int = 100
    timeout: float = 5.0  # seconds to wait for a check, queue included (~30 ms for the UI's largest)


class DocumentRefused(Exception):
    """A document outside the limits or unreadable: the message is the client's 400 detail."""


@dataclass
class _Shape:
    """What one selection set expands to: depth, aliases, fields, and its own level's response names."""

    depth: int = 0
    aliases: int = 0
    fields: int = 0
    names: Counter[str] = field(default_factory=Counter)

    def add(self, other: _Shape, depth: int) -> None:
        self.depth = max(self.depth, depth)
        self.aliases += other.aliases
        self.fields += other.fields


class _Measure:
    """Measures the selection sets of one document (each fragment once), refusing past `limits`."""

    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode], limits: GraphQLLimits) -> None:
        self.fragments, self.limits = fragments, limits
        self.memo: dict[str, _Shape] = {}
        self.visiting: set[str] = set()

    def __call__(self, selection_set: SelectionSetNode) -> _Shape:
        shape = _Shape()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                below = self(selection.selection_set) if selection.selection_set is not None else _Shape()
                shape.add(below, 1 + below.depth)
                shape.aliases += selection.alias is not None
                shape.fields += 1
                shape.names[(selection.alias or selection.name).value] += 1
            elif isinstance(selection, InlineFragmentNode | FragmentSpreadNode):
                inner = (
                    self(selection.selection_set)
                    if isinstance(selection, InlineFragmentNode)
                    else self._fragment(selection.name.value)
                )
                shape.add(inner, inner.depth)
                shape.names.update(inner.names)
        self._check(shape)
        return shape

    def _check(self, shape: _Shape) -> None:
        limits = self.limits
        if shape.depth > limits.max_depth:
            raise DocumentRefused(f"GraphQL document over {limits.max_depth} levels deep")
        if shape.aliases > limits.max_aliases:
            raise DocumentRefused(f"GraphQL document has over {limits.max_aliases} aliases")
        if shape.fields > limits.max_fields:
            raise DocumentRefused(f"GraphQL document selects over {limits.max_fields} fields")
        if shape.names and (top := shape.names.most_common(1)[0])[1] > limits.max_repeats:
            raise DocumentRefused(
                f"GraphQL field {top[0]} selected {top[1]} times in one selection set; at most {limits.max_repeats}"
            )

    def _fragment(self, name: str) -> _Shape:
        if name in self.visiting:
            raise DocumentRefused(f"GraphQL fragment {name} spreads itself")
        if name not in self.memo:
            fragment = self.fragments.get(name)  # unknown: the webserver's validation refuses it
            self.visiting.add(name)
            self.memo[name] = self(fragment.selection_set) if fragment is not None else _Shape()
            self.visiting.discard(name)
        return self.memo[name]


def operation_kinds(document: str, limits: GraphQLLimits) -> frozenset[str]:
    """The operation kinds a document defines, or `DocumentRefused` when it is outside `limits`."""
    try:
        parsed: DocumentNode = parse(document, no_location=True, max_tokens=limits.max_tokens)
        fragments = {d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)}
        operations = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
        measure = _Measure(fragments, limits)
        for operation in operations:
            measure(operation.selection_set)
    except GraphQLError as exc:
        raise DocumentRefused(f"GraphQL syntax error: {exc.message}") from exc
    except RecursionError:
        raise DocumentRefused(f"GraphQL document over {limits.max_depth} levels deep") from None
    return frozenset(op.operation.value for op in operations)


def check_document(document: str, limits: GraphQLLimits) -> frozenset[str] | str:
    """`operation_kinds`, with a refusal returned as its message (what crosses the process boundary)."""
    try:
        return operation_kinds(document, limits)
    except DocumentRefused as refused:
        return str(refused)


def _exit_with_parent(parent: int) -> None:
    """A worker's initializer: exit once the gateway that started it is gone, however it went (a worker
    blocked on its call queue never sees that queue close: it holds a writer end itself)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class CheckerPool:
    """`check_document` in `workers` spawned processes, started at once; rebuilt if a worker dies.

    One per process (`shared_pool`): every gateway in it (tests start many) uses the same workers."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self.started: list[Future] = []
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: the gateway has threads (uvicorn, the metrics reader) a fork would copy mid-lock.
        # A spawned worker imports the parent's __main__ (guarded, as console scripts and `-m` modules are).
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_exit_with_parent, initargs=(os.getpid(),))  # fmt: skip
        # Start the workers now (the gateway waits for them before it serves), not on a client's request.
        self.started = [pool.submit(os.getpid) for _ in range(self.workers)]
        return pool

    def restart(self, broken: ProcessPoolExecutor | None = None) -> None:
        """Replace the pool (if it is still `broken`: concurrent callers restart it once)."""
        with self._lock:
            if broken is None or self._pool is broken:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._start()

    @property
    def executor(self) -> ProcessPoolExecutor:
        return self._pool


_shared: CheckerPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> CheckerPool:
    """This process's `CheckerPool`, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = CheckerPool()
        return _shared
