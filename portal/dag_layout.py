"""A workflow's DAG laid out left to right (Sugiyama's layered method), as numbers that
`portal/parts/dag.html` draws as SVG. Pure Python, no Django: the page runs no JavaScript to
lay a graph out, and the layout is tested in microseconds.

The steps:

1. Layers: each node's longest path from a source, so every edge points right.
2. Dummy nodes: an edge spanning several layers gets one in each layer it passes, so it
   is routed between the nodes of those columns instead of through them.
3. Order within the layers: barycentre sweeps, down then up, a few passes; the order with
   the fewest crossings wins. Ties keep the order the nodes were given.
4. Coordinates: a layer is a column as wide as its widest label; within it each node is
   pulled towards its neighbours' height as far as the spacing allows (a least-squares fit
   under the spacing constraints), so chains stay straight and fans stay centred.

The same input always gives the same output: nothing depends on hashing or timing.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise

__all__ = ["DagLayout", "EdgePath", "NodeBox", "default_label_width", "layout"]

NODE_HEIGHT = 58  # three lines: the task id, "type · trigger rule", the state
MIN_NODE_WIDTH = 140  # wide enough for a typical "python · all_success" caption
MAX_NODE_WIDTH = 260  # longer ids are shortened with "…" (the full id is in the tooltip)
PADDING = 10  # text inset inside a node box, each side
CHAR_WIDTH = 8  # px per character of the bold 13 px id text, when no label_width is given
COLUMN_GAP = 72  # room for the edges between two columns
NODE_GAP = 14  # vertical space between two boxes of a column
DUMMY_HEIGHT = 4  # the slot of a long edge in a column it passes through
MARGIN = 16
ORDER_SWEEPS = 8  # barycentre sweeps (alternately down and up) at most
PLACEMENT_ROUNDS = 3  # rounds of (down, up) alignment of the coordinates
ELLIPSIS = "…"


@dataclass(frozen=True)
class NodeBox:
    """A task's box: top-left corner, size, and its layer (column index). `label` is the id,
    shortened with "…" when it does not fit the box."""

    id: str
    x: int
    y: int
    w: int
    h: int
    layer: int
    label: str


@dataclass(frozen=True)
class EdgePath:
    """A dependency: `d` is an SVG path from the right side of the source's box to the left
    side of the target's, smooth, through the dummy nodes of a long edge."""

    source: str
    target: str
    d: str


@dataclass(frozen=True)
class DagLayout:
    """The drawing's size in px, the boxes in the order the nodes were given, the edges in
    the order they were given (duplicates dropped), and how many crossings remain."""

    width: int
    height: int
    nodes: list[NodeBox]
    edges: list[EdgePath]
    crossings: int


def default_label_width(text: str) -> int:
    """About 8 px per character of the bold 13 px sans-serif the stylesheet uses for ids."""
    return CHAR_WIDTH * len(text)


_Column = tuple[int, int]  # a layer's left edge and width in px


@dataclass
class _Graph:
    """The layered graph with dummies: vertex v < real is the v-th given node, the others
    are dummies. `chains[i]` are the vertices of the i-th edge, source to target."""

    real: int
    layer: list[int]
    preds: list[list[int]]
    succs: list[list[int]]
    chains: list[list[int]]

    @property
    def size(self) -> int:
        return len(self.layer)


def layout(
    nodes: Sequence[str],
    edges: Sequence[tuple[str, str]],
    *,
    label_width: Callable[[str], int] | None = None,
) -> DagLayout:
    """Lay out the DAG of `nodes` and `edges` (source, target) left to right.

    `label_width(text)` measures a label in px (default: 8 px a character); a column is as
    wide as its widest label plus padding, clamped to 140..260 px. Raises ValueError for a
    repeated node, an edge naming an unknown node, or a cycle (naming its nodes)."""
    measure = label_width or default_label_width
    pairs = _edge_indexes(nodes, edges)
    graph = _with_dummies(len(nodes), pairs, _longest_path_layers(nodes, pairs))
    order, crossings = _order(graph)
    centres = _place(order, graph)
    widths = [_column_width([nodes[v] for v in row if v < graph.real], measure) for row in order]
    lefts = accumulate((w + COLUMN_GAP for w in widths), initial=MARGIN)  # one extra at the end
    columns = list(zip(lefts, widths, strict=False))
    boxes = [
        _box(node, graph.layer[v], columns, centres[v], measure) for v, node in enumerate(nodes)
    ]
    paths = [
        EdgePath(nodes[chain[0]], nodes[chain[-1]], _path(chain, graph, centres, columns))
        for chain in graph.chains
    ]
    width = columns[-1][0] + columns[-1][1] + MARGIN if columns else 2 * MARGIN
    bottom = max((c + DUMMY_HEIGHT // 2 for c in centres[graph.real :]), default=MARGIN)
    height = max([bottom, *(b.y + b.h for b in boxes)]) + MARGIN
    return DagLayout(width=width, height=height, nodes=boxes, edges=paths, crossings=crossings)


def _edge_indexes(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
    """The edges as index pairs, in the given order, each once."""
    index: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node in index:
            raise ValueError(f"node {node!r} is given twice")
        index[node] = i
    pairs: dict[tuple[int, int], None] = {}
    for source, target in edges:
        for end in (source, target):
            if end not in index:
                raise ValueError(f"edge ({source!r}, {target!r}) names an unknown node {end!r}")
        pairs[(index[source], index[target])] = None
    return list(pairs)


def _longest_path_layers(nodes: Sequence[str], pairs: list[tuple[int, int]]) -> list[int]:
    """Each node's layer: the length of the longest path reaching it (Kahn's algorithm)."""
    succs: list[list[int]] = [[] for _ in nodes]
    indegree = [0] * len(nodes)
    for u, v in pairs:
        succs[u].append(v)
        indegree[v] += 1
    layer = [0] * len(nodes)
    ready = deque(v for v in range(len(nodes)) if indegree[v] == 0)
    done = 0
    while ready:
        u = ready.popleft()
        done += 1
        for v in succs[u]:
            layer[v] = max(layer[v], layer[u] + 1)
            indegree[v] -= 1
            if indegree[v] == 0:
                ready.append(v)
    if done < len(nodes):
        raise ValueError(f"the graph has a cycle: {' -> '.join(_cycle(nodes, pairs, indegree))}")
    return layer


def _cycle(nodes: Sequence[str], pairs: list[tuple[int, int]], indegree: list[int]) -> list[str]:
    """A cycle among the nodes Kahn's algorithm could not take (each still has an upstream
    among them), as a closed path [a, b, a]: walk upstream until a node repeats."""
    stuck = [v for v in range(len(nodes)) if indegree[v] > 0]
    upstream: dict[int, int] = {}
    for u, v in pairs:
        if indegree[u] > 0 and indegree[v] > 0:
            upstream.setdefault(v, u)
    walk, seen = [stuck[0]], {stuck[0]: 0}
    while (nxt := upstream[walk[-1]]) not in seen:
        seen[nxt] = len(walk)
        walk.append(nxt)
    loop = [*walk[seen[nxt] :], nxt]
    return [nodes[v] for v in reversed(loop)]


def _with_dummies(real: int, pairs: list[tuple[int, int]], layer: list[int]) -> _Graph:
    """Split each edge spanning k > 1 layers into k unit edges through k - 1 dummies."""
    graph = _Graph(real, list(layer), [[] for _ in layer], [[] for _ in layer], [])
    for u, v in pairs:
        chain = [u]
        for between in range(layer[u] + 1, layer[v]):
            graph.layer.append(between)
            graph.preds.append([])
            graph.succs.append([])
            chain.append(graph.size - 1)
        chain.append(v)
        for a, b in pairwise(chain):
            graph.succs[a].append(b)
            graph.preds[b].append(a)
        graph.chains.append(chain)
    return graph


def _order(graph: _Graph) -> tuple[list[list[int]], int]:
    """The vertices of each layer top to bottom, and the crossings of that order."""
    order: list[list[int]] = [[] for _ in range(max(graph.layer, default=-1) + 1)]
    for v in range(graph.size):  # the given nodes in the given order, then the dummies
        order[graph.layer[v]].append(v)
    position = _positions(order, graph.size)
    best, fewest = [row[:] for row in order], _crossings(order, graph, position)
    for sweep in range(ORDER_SWEEPS):
        if fewest == 0:
            break
        down = sweep % 2 == 0
        rows = range(1, len(order)) if down else range(len(order) - 2, -1, -1)
        for i in rows:
            order[i] = _by_barycentre(order[i], graph.preds if down else graph.succs, position)
            for p, v in enumerate(order[i]):
                position[v] = p
        crossings = _crossings(order, graph, position)
        if crossings < fewest:
            best, fewest = [row[:] for row in order], crossings
    return best, fewest


def _positions(order: list[list[int]], size: int) -> list[int]:
    position = [0] * size
    for row in order:
        for p, v in enumerate(row):
            position[v] = p
    return position


def _by_barycentre(row: list[int], neighbours: list[list[int]], position: list[int]) -> list[int]:
    """Sort a layer by the mean position of each vertex's neighbours in the fixed layer; ties
    by vertex number (the given order). A vertex without neighbours there keeps its slot."""
    keyed: list[tuple[float, int]] = []
    alone: list[tuple[int, int]] = []
    for slot, v in enumerate(row):
        near = neighbours[v]
        if near:
            keyed.append((sum(position[u] for u in near) / len(near), v))
        else:
            alone.append((slot, v))
    keyed.sort()
    result: list[int] = []
    waiting = deque(alone)
    for _, v in keyed:
        while waiting and waiting[0][0] <= len(result):
            result.append(waiting.popleft()[1])
        result.append(v)
    result.extend(v for _, v in waiting)
    return result


def _crossings(order: list[list[int]], graph: _Graph, position: list[int]) -> int:
    """Edge crossings between each pair of adjacent layers: the inversions of the lower ends
    when the edges are sorted by their upper ends (a Fenwick tree, O(E log V))."""
    total = 0
    for i in range(len(order) - 1):
        lower = [
            position[w] for v in order[i] for w in sorted(graph.succs[v], key=position.__getitem__)
        ]
        total += _inversions(lower, len(order[i + 1]))
    return total


def _inversions(values: list[int], bound: int) -> int:
    """Pairs i < j with values[i] > values[j], for values in 0..bound-1."""
    tree = [0] * (bound + 1)
    count = 0
    for seen, value in enumerate(values):
        at_most, k = 0, value + 1
        while k > 0:
            at_most += tree[k]
            k -= k & -k
        count += seen - at_most
        k = value + 1
        while k <= bound:
            tree[k] += 1
            k += k & -k
    return count


def _place(order: list[list[int]], graph: _Graph) -> list[int]:
    """Each vertex's vertical centre in px: columns first stacked and centred, then each
    vertex pulled to its neighbours' mean height, sweeping down then up."""
    height = [NODE_HEIGHT if v < graph.real else DUMMY_HEIGHT for v in range(graph.size)]
    centre = [0.0] * graph.size
    for row in order:
        offsets = _offsets(row, height)
        middle = offsets[-1] / 2 if offsets else 0.0
        for v, offset in zip(row, offsets, strict=True):
            centre[v] = offset - middle
    for _ in range(PLACEMENT_ROUNDS):
        for neighbours, rows in (
            (graph.preds, order[1:]),
            (graph.succs, order[-2::-1]),
        ):
            for row in rows:
                wanted = [_mean(neighbours[v], centre) if neighbours[v] else centre[v] for v in row]
                for v, y in zip(row, _fit(wanted, _offsets(row, height)), strict=True):
                    centre[v] = y
    top = min((centre[v] - height[v] / 2 for v in range(graph.size)), default=0.0)
    pixels = [0] * graph.size
    for row in order:  # whole pixels, keeping at least the spacing rounding could eat
        for i, v in enumerate(row):
            pixel = math.floor(centre[v] - top + 0.5) + MARGIN
            if i:
                previous = row[i - 1]
                pixel = max(
                    pixel, pixels[previous] + (height[previous] + height[v]) // 2 + NODE_GAP
                )
            pixels[v] = pixel
    return pixels


def _offsets(row: list[int], height: list[int]) -> list[float]:
    """The smallest distance of each vertex's centre below the first one's."""
    offsets: list[float] = []
    for i, v in enumerate(row):
        gap = (height[row[i - 1]] + height[v]) / 2 + NODE_GAP if i else 0.0
        offsets.append((offsets[-1] if offsets else 0.0) + gap)
    return offsets


def _mean(vertices: list[int], centre: list[float]) -> float:
    return sum(centre[u] for u in vertices) / len(vertices)


def _fit(wanted: list[float], offsets: list[float]) -> list[float]:
    """The centres closest to `wanted` (least squares) that keep the order and spacing:
    with z = y - offset the constraint is z non-decreasing, an isotonic regression solved by
    pooling adjacent violators."""
    if len(wanted) < 2:
        return wanted
    blocks: list[tuple[float, int]] = []  # (sum, count) of pooled z values
    for target in (w - o for w, o in zip(wanted, offsets, strict=True)):
        total, count = target, 1
        while blocks and blocks[-1][0] * count > total * blocks[-1][1]:
            previous_total, previous_count = blocks.pop()
            total, count = total + previous_total, count + previous_count
        blocks.append((total, count))
    pooled = [total / count for total, count in blocks for _ in range(count)]
    return [z + o for z, o in zip(pooled, offsets, strict=True)]


def _column_width(labels: list[str], measure: Callable[[str], int]) -> int:
    widest = max((measure(label) for label in labels), default=0)
    return max(MIN_NODE_WIDTH, min(MAX_NODE_WIDTH, widest + 2 * PADDING))


def _box(
    node: str, layer: int, columns: list[_Column], centre: int, measure: Callable[[str], int]
) -> NodeBox:
    x, width = columns[layer]
    label = _shortened(node, width - 2 * PADDING, measure)
    return NodeBox(node, x, centre - NODE_HEIGHT // 2, width, NODE_HEIGHT, layer, label)


def _shortened(text: str, room: int, measure: Callable[[str], int]) -> str:
    """The text, or its longest prefix that fits `room` px with "…" after it."""
    if measure(text) <= room:
        return text
    lengths = range(len(text))
    fits = bisect_left(lengths, True, key=lambda n: measure(text[:n] + ELLIPSIS) > room)
    return text[: max(fits - 1, 1)] + ELLIPSIS


def _path(chain: list[int], graph: _Graph, centres: list[int], columns: list[_Column]) -> str:
    """M at the source's right side, a curve into each dummy's column and straight across
    it, and a curve into the target's left side (where the arrow marker ends)."""
    left, width = columns[graph.layer[chain[0]]]
    x, y = left + width, centres[chain[0]]
    parts = [f"M{x},{y}"]
    for vertex in chain[1:]:
        left, width = columns[graph.layer[vertex]]
        parts.append(_curve(x, y, left, centres[vertex]))
        x, y = left + width, centres[vertex]
        if vertex >= graph.real:
            parts.append(f"H{x}")
    return "".join(parts)


def _curve(x1: int, y1: int, x2: int, y2: int) -> str:
    """A horizontal-tangent cubic from (x1, y1) to (x2, y2); a straight line when level."""
    if y1 == y2:
        return f"H{x2}"
    bend = (x2 - x1) // 2
    return f"C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
