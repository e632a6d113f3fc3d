"""The dependency graph between checks: cycle detection at ``add``, root causes, ``/graph``.

A check may depend on others (``health.add(..., depends_on=("redis",))``). When a dependency
is down, each dependent reports its *root cause*: the deepest dependency that is down (a
dependency that is down because of its own dependency passes the blame on). Names may refer
to checks added later; until then they count as ``unknown``, never as down.
Internal to :mod:`modelwatch.health`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from modelwatch.errors import ConfigurationError

Edges = Mapping[str, tuple[str, ...]]


def dependency_names(name: str, depends_on: object) -> tuple[str, ...]:
    """``depends_on`` as a tuple of names (one string is one name), or a ConfigurationError."""
    if depends_on is None:
        return ()
    items = (depends_on,) if isinstance(depends_on, str) else depends_on
    if not isinstance(items, Iterable):
        raise ConfigurationError(
            f"add({name!r}, depends_on=...): must be check names, got {depends_on!r}"
        )
    names = tuple(items)
    for item in names:
        if not isinstance(item, str) or not item.strip():
            raise ConfigurationError(
                f"add({name!r}, depends_on=...): must be non-empty check names, got {item!r}"
            )
    if name in names:
        raise ConfigurationError(f"add({name!r}, depends_on=...): a check cannot depend on itself")
    return tuple(dict.fromkeys(names))


def find_cycle(edges: Edges, start: str) -> list[str] | None:
    """A dependency path from ``start`` back to itself, or ``None``."""
    path: list[str] = [start]
    seen: set[str] = set()

    def visit(node: str) -> bool:
        for nxt in edges.get(node, ()):
            if nxt == start:
                path.append(nxt)
                return True
            if nxt in seen:
                continue
            seen.add(nxt)
            path.append(nxt)
            if visit(nxt):
                return True
            path.pop()
        return False

    return path if visit(start) else None


def check_acyclic(edges: Edges, added: Iterable[str]) -> None:
    """Raise a ConfigurationError naming the cycle if one of ``added`` closes one."""
    for name in added:
        cycle = find_cycle(edges, name)
        if cycle is not None:
            raise ConfigurationError(
                f"add({name!r}, depends_on=...): dependency cycle {' -> '.join(cycle)}"
            )


def reaches(edges: Edges, start: str, target: str) -> bool:
    """Whether ``start`` depends on ``target``, directly or through other checks."""
    seen: set[str] = set()
    todo = list(edges.get(start, ()))
    while todo:
        node = todo.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return False


def root_causes(edges: Edges, is_down: Callable[[str], bool]) -> dict[str, str]:
    """For every check with a dependency that is down: its root cause (the deepest down
    dependency; the first declared one among equally deep)."""
    memo: dict[str, tuple[int, str] | None] = {}

    def deepest(node: str) -> tuple[int, str] | None:
        """The deepest down dependency below ``node`` and how deep it is."""
        if node in memo:
            return memo[node]
        memo[node] = None  # the graph is acyclic; this only guards against surprises
        best: tuple[int, str] | None = None
        for dep in edges.get(node, ()):
            if not is_down(dep):
                continue
            below = deepest(dep)
            found = (below[0] + 1, below[1]) if below is not None else (1, dep)
            if best is None or found[0] > best[0]:
                best = found
        memo[node] = best
        return best

    causes: dict[str, str] = {}
    for name in edges:
        found = deepest(name)
        if found is not None:
            causes[name] = found[1]
    return causes


def graph_dict(
    nodes: Iterable[Mapping[str, Any]], edges: Edges, causes: Mapping[str, str]
) -> dict[str, Any]:
    """The body of ``GET /graph``: every check (and every named but undeclared dependency)
    with its state and cause, and one edge per dependency (``from`` depends on ``to``)."""
    out = [dict(node) for node in nodes]
    declared = {node["name"] for node in out}
    for name in dict.fromkeys(dep for deps in edges.values() for dep in deps):
        if name not in declared:
            out.append(
                {"name": name, "kind": None, "status": "unknown", "cause": None, "declared": False}
            )
            declared.add(name)
    for node in out:
        node.setdefault("declared", True)
        node["cause"] = causes.get(node["name"])
    return {
        "nodes": out,
        "edges": [{"from": name, "to": dep} for name, deps in edges.items() for dep in deps],
    }
