"""DAG algorithms over `{task_id: [upstream ids]}` mappings. Pure Python: no Django, so
they are tested in microseconds and reused by validation, the engine and the UI."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "Graph",
    "downstream",
    "downstream_of",
    "find_cycle",
    "layers",
    "topological_order",
    "upstream_of",
]

Graph = Mapping[str, Sequence[str]]  # task id -> the ids it depends on (its upstreams)


def downstream(graph: Graph) -> dict[str, list[str]]:
    """Invert the graph: task id -> the ids that depend on it, in declaration order."""
    result: dict[str, list[str]] = {node: [] for node in graph}
    for node, ups in graph.items():
        for up in ups:
            if up in result:
                result[up].append(node)
    return result


def find_cycle(graph: Graph) -> list[str] | None:
    """A cycle as a closed path `[a, b, a]` (each depends on the next), or None.

    Iterative depth-first search, so a long chain cannot hit the recursion limit."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for start in graph:
        if colour[start] != white:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        colour[start] = grey
        while stack:
            node, index = stack[-1]
            ups = [u for u in graph[node] if u in graph]
            if index < len(ups):
                stack[-1] = (node, index + 1)
                nxt = ups[index]
                if colour[nxt] == grey:
                    return [*path[path.index(nxt) :], nxt]
                if colour[nxt] == white:
                    colour[nxt] = grey
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                colour[node] = black
                stack.pop()
                path.pop()
    return None


def topological_order(graph: Graph) -> list[str]:
    """Every task after all its upstreams; ties keep declaration order (Kahn's algorithm).

    Raises ValueError when the graph has a cycle."""
    pending = {node: sum(1 for u in ups if u in graph) for node, ups in graph.items()}
    children = downstream(graph)
    ready = deque(node for node, count in pending.items() if count == 0)
    order: list[str] = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for child in children[node]:
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)
    if len(order) != len(graph):
        raise ValueError(f"graph has a cycle: {' -> '.join(find_cycle(graph) or [])}")
    return order


def _closure(edges: Mapping[str, Sequence[str]], starts: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    queue = deque(edges.get(s, ()) for s in starts)
    while queue:
        for node in queue.popleft():
            if node not in seen and node in edges:
                seen.add(node)
                queue.append(edges[node])
    return seen


def upstream_of(graph: Graph, node: str) -> set[str]:
    """Every task `node` depends on, directly or not."""
    return _closure(graph, [node])


def downstream_of(graph: Graph, nodes: Iterable[str]) -> set[str]:
    """Every task that depends on any of `nodes`, directly or not (the nodes excluded)."""
    return _closure(downstream(graph), nodes)


def layers(graph: Graph) -> list[list[str]]:
    """Tasks grouped by depth (the longest path from a root), for drawing left to right."""
    depth: dict[str, int] = {}
    for node in topological_order(graph):
        depth[node] = 1 + max((depth[u] for u in graph[node] if u in depth), default=-1)
    result: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node, d in depth.items():
        result[d].append(node)
    return result
