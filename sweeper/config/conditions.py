"""Conditional parameters (``when:``): which searched parameters exist at a point.

A parameter with ``when: {optimizer: sgd, model__layers: [2, 3]}`` exists only where every
named parameter exists and holds one of the listed values (all of the keys, any of the values);
elsewhere it is absent: never suggested, never queued, never stored, never passed to the model.
Decided here once, without Optuna: the grid's points and size, a sampler's define-by-run order,
whether a stored point is whole, and the sweep file's checks (unknown parent, a value it cannot
take, a cycle, a condition no point satisfies).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sweeper.config.values import err

Condition = tuple[tuple[str, tuple[Any, ...]], ...]  # (parent, the values it may hold), by parent


def same(a: Any, b: Any) -> bool:
    """Equal as parameter values: True is not 1, 1 is 1.0."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def has_conditions(params: Mapping[str, Any]) -> bool:
    return any(p.when for p in params.values())


def holds(when: Condition, point: Mapping[str, Any]) -> bool:
    """Every parent is at the point with one of its allowed values."""
    return all(parent in point and any(same(point[parent], v) for v in allowed) for parent, allowed in when)


def order(params: Mapping[str, Any]) -> list[str]:
    """The parameters with each parent before its children, else in the file's order (the order
    a grid varies them in and a sampler is asked for them). Assumes no cycle (``check``)."""
    placed: list[str] = []
    left = list(params)
    while left:
        ready = next(n for n in left if all(q in placed for q, _ in params[n].when))
        placed.append(ready)
        left.remove(ready)
    return placed


def active(params: Mapping[str, Any], point: Mapping[str, Any]) -> list[str]:
    """The parameters that exist at ``point`` (a point's values decide its children's)."""
    if not has_conditions(params):  # every one (progress asks this of every trial, often)
        return list(params)
    return [n for n in order(params) if holds(params[n].when, point)]


def missing(params: Mapping[str, Any], point: Mapping[str, Any]) -> list[str]:
    """Parameters the point should hold, by its own values, and does not (a worker that died
    between two of a trial's params' writes left it so)."""
    return [n for n in active(params, point) if n not in point]


def is_point(params: Mapping[str, Any], point: Mapping[str, Any]) -> bool:
    """``point`` holds exactly the parameters that exist at it (its values are not checked)."""
    return set(point) <= set(params) and set(point) == set(active(params, point))


def grid_points(params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every point of a grid of lists: the product over the parameters that exist, in the order
    of the file's lists (a parent's value decides which of its children vary)."""
    names = order(params)
    point: dict[str, Any] = {}

    def walk(i: int) -> Iterator[dict[str, Any]]:
        if i == len(names):
            yield dict(point)
            return
        name = names[i]
        if not holds(params[name].when, point):
            yield from walk(i + 1)
            return
        for v in params[name].values or ():
            point[name] = v
            yield from walk(i + 1)
        point.pop(name, None)

    yield from walk(0)


def grid_size(params: Mapping[str, Any]) -> int:
    """How many points ``grid_points`` gives, counted without listing them: only the values of
    parents that later parameters name are branched on (remembered by those values)."""
    names = order(params)
    named_after = [{q for n in names[i:] for q, _ in params[n].when} for i in range(len(names) + 1)]
    seen: dict[tuple[Any, ...], int] = {}
    point: dict[str, Any] = {}

    def count(i: int) -> int:
        if i == len(names):
            return 1
        key = (i, *sorted((q, repr(point[q]) if q in point else "absent") for q in named_after[i]))
        if key in seen:
            return seen[key]
        name, p = names[i], params[names[i]]
        if not holds(p.when, point):
            total = count(i + 1)
        elif name not in named_after[i + 1]:
            total = len(p.values or ()) * count(i + 1)
        else:
            total = 0
            for v in p.values or ():
                point[name] = v
                total += count(i + 1)
            del point[name]
        seen[key] = total
        return total

    return count(0)


def takes(p: Any, v: Any) -> bool:
    """Whether parameter ``p`` (a ParamSpec) can take the value ``v``."""
    if p.values is not None:
        return any(same(v, c) for c in p.values)
    if not p.is_int or isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
        return False
    return p.low <= v <= p.high and (not p.step or (int(v) - int(p.low)) % int(p.step) == 0)


def check(source: str, params: Mapping[str, Any], written: Mapping[str, str]) -> None:
    """The sweep file's conditions, each refusal one line naming the key: a parent that is not
    searched, a value it cannot take, a cycle, a condition that no point satisfies. ``written``:
    each parameter's key as the file wrote it (an alias), for the paths."""
    for name, p in params.items():
        for parent, allowed in p.when:
            path = f"params.{written[name]}.when.{written.get(parent, parent)}"
            if parent not in params:
                raise err(source, path, f"unknown parameter: a condition names a searched parameter "
                          f"(known: {', '.join(params)})")
            q = params[parent]
            if q.values is None and not q.is_int:
                raise err(source, path, f"{parent} is a float range, whose values never repeat: a condition "
                          "needs a parameter with a list of values or an integer range")
            for v in allowed:
                if not takes(q, v):
                    can = ", ".join(map(repr, q.values)) if q.values is not None else f"integers in [{q.low}, {q.high}]"
                    raise err(source, path, f"{v!r} is not a value {parent} can take (it takes {can})")
    _check_cycles(source, params, written)
    for name, p in params.items():
        if p.when:
            _check_satisfiable(source, params, written, name)


def _check_cycles(source: str, params: Mapping[str, Any], written: Mapping[str, str]) -> None:
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            loop = path[path.index(name):] + [name]
            raise err(source, f"params.{written[name]}.when", "a cycle of conditions: " + " -> ".join(loop)
                      + " (each needs the other to exist)")
        state[name] = 1
        for parent, _ in params[name].when:
            visit(parent, path + [name])
        state[name] = 2

    for name in params:
        visit(name, [])


def _check_satisfiable(source: str, params: Mapping[str, Any], written: Mapping[str, str], name: str) -> None:
    try:
        required(params, name)
    except ValueError as exc:
        raise err(source, f"params.{written[name]}.when", f"no point satisfies it: {exc}") from None


def required(params: Mapping[str, Any], name: str) -> dict[str, list[Any]]:
    """The values each ancestor must hold for ``name`` to exist: its own and all its ancestors'
    conditions at once, the intersection of every condition on one parent (``ValueError`` when
    one is empty: no point has the parameter)."""
    allowed: dict[str, list[Any]] = {}
    stack, seen = [name], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        for parent, values in params[current].when:
            before = allowed.get(parent)
            allowed[parent] = [v for v in values if before is None or any(same(v, b) for b in before)]
            if not allowed[parent]:
                raise ValueError(f"{parent} would have to be one of {list(values)!r} and of {before!r} at once "
                                 f"(through {current})")
            stack.append(parent)
    return allowed
