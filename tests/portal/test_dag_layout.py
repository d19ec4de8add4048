"""portal.dag_layout on random DAGs (Hypothesis) and named shapes, and the parts/dag.html
template that draws a layout. No database: the layout is pure and the template needs only
the template engine."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from collections import defaultdict

import pytest
from django.template.loader import render_to_string
from django.test import override_settings
from django.utils import translation
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.dag_layout import (
    MAX_NODE_WIDTH,
    MIN_NODE_WIDTH,
    NODE_GAP,
    DagLayout,
    NodeBox,
    layout,
)

Edges = list[tuple[str, str]]
FAST = settings(max_examples=100, deadline=None)
SVG = "{http://www.w3.org/2000/svg}"


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], Edges]:
    """Nodes in a random order; each edge goes from a node to one later in a hidden random
    topological order, so the graph is acyclic."""
    count = draw(st.integers(min_value=0, max_value=14))
    topological = draw(st.permutations([f"t{i}" for i in range(count)]))
    pairs = list(itertools.combinations(topological, 2))
    edges = draw(st.lists(st.sampled_from(pairs), max_size=30)) if pairs else []
    return draw(st.permutations(topological)), edges


def boxes(drawing: DagLayout) -> dict[str, NodeBox]:
    return {box.id: box for box in drawing.nodes}


def centre(box: NodeBox) -> int:
    return box.y + box.h // 2


def adjacent_crossings(drawing: DagLayout, edges: Edges) -> int:
    """Crossings, from the drawing, of the edges between adjacent layers."""
    by_id = boxes(drawing)
    unique = dict.fromkeys(edges)
    short = [(by_id[s], by_id[t]) for s, t in unique if by_id[t].layer == by_id[s].layer + 1]
    return sum(
        1
        for (a, b), (c, d) in itertools.combinations(short, 2)
        if a.layer == c.layer and (centre(a) - centre(c)) * (centre(b) - centre(d)) < 0
    )


def walk(d: str) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
    """The segments of a path made of M, C and H commands: (command, from, to)."""
    segments = []
    here = (0, 0)
    for command, args in re.findall(r"([MCH])([^MCH]*)", d):
        numbers = [int(n) for n in re.findall(r"-?\d+", args)]
        there = (numbers[0], here[1]) if command == "H" else (numbers[-2], numbers[-1])
        if command != "M":
            segments.append((command, here, there))
        here = there
    return segments


def check_drawing(nodes: list[str], edges: Edges, drawing: DagLayout) -> None:
    """What every layout must hold, whatever the graph."""
    assert [box.id for box in drawing.nodes] == nodes
    by_id = boxes(drawing)
    for source, target in edges:
        assert by_id[source].layer < by_id[target].layer
    for box in drawing.nodes:  # longest-path layers: a node not in layer 0 has a reason
        ups = [by_id[s].layer for s, t in edges if t == box.id]
        assert box.layer == (max(ups) + 1 if ups else 0)
        assert box.x >= 0
        assert box.x + box.w <= drawing.width
        assert box.y >= 0
        assert box.y + box.h <= drawing.height
        assert MIN_NODE_WIDTH <= box.w <= MAX_NODE_WIDTH
    columns: dict[int, list[NodeBox]] = defaultdict(list)
    for box in drawing.nodes:
        columns[box.layer].append(box)
    for column in columns.values():
        assert len({(box.x, box.w) for box in column}) == 1
        ordered = sorted(column, key=lambda box: box.y)
        for upper, lower in itertools.pairwise(ordered):
            assert upper.y + upper.h + NODE_GAP <= lower.y
    lefts = [columns[layer][0].x for layer in sorted(columns)]
    rights = [columns[layer][0].x + columns[layer][0].w for layer in sorted(columns)]
    assert all(right < left for right, left in zip(rights, lefts[1:], strict=False))
    assert [(e.source, e.target) for e in drawing.edges] == list(dict.fromkeys(edges))
    for edge in drawing.edges:
        check_route(edge.d, by_id[edge.source], by_id[edge.target], drawing.nodes)


def check_route(d: str, source: NodeBox, target: NodeBox, all_boxes: list[NodeBox]) -> None:
    """From the source's right side to the target's left side, curving only between columns
    and crossing a column only beside its boxes."""
    assert d.startswith(f"M{source.x + source.w},{centre(source)}")
    segments = walk(d)
    assert segments[-1][2] == (target.x, centre(target))
    for command, (x0, y0), (x1, y1) in segments:
        assert x0 < x1
        inside = [b for b in all_boxes if b.x < x1 and x0 < b.x + b.w]
        if command == "C":
            assert not inside
        else:
            assert y0 == y1
            assert not [b for b in inside if b.y <= y0 <= b.y + b.h]


@FAST
@given(dags())
def test_it_lays_out_any_dag_left_to_right_without_overlaps(graph: tuple[list[str], Edges]) -> None:
    nodes, edges = graph
    check_drawing(nodes, edges, layout(nodes, edges))


@FAST
@given(dags())
def test_it_gives_the_same_layout_for_the_same_input(graph: tuple[list[str], Edges]) -> None:
    nodes, edges = graph
    assert layout(nodes, edges) == layout(list(nodes), list(edges))


@FAST
@given(dags())
def test_it_counts_the_crossings_it_draws(graph: tuple[list[str], Edges]) -> None:
    nodes, edges = graph
    drawing = layout(nodes, edges)
    if all(boxes(drawing)[t].layer == boxes(drawing)[s].layer + 1 for s, t in edges):
        assert drawing.crossings == adjacent_crossings(drawing, edges)


def test_it_draws_a_diamond_without_crossings_and_centred() -> None:
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    drawing = layout(["a", "b", "c", "d"], edges)
    a, b, c, d = (boxes(drawing)[n] for n in "abcd")
    assert (a.layer, b.layer, c.layer, d.layer) == (0, 1, 1, 2)
    assert drawing.crossings == 0 == adjacent_crossings(drawing, edges)
    assert b.y < c.y  # the tie keeps the given order
    assert centre(a) == centre(d) == (centre(b) + centre(c)) // 2


def test_its_sweeps_undo_a_crossing_of_the_given_order() -> None:
    edges = [("a", "d"), ("b", "c")]  # given order a, b | c, d crosses once
    drawing = layout(["a", "b", "c", "d"], edges)
    assert drawing.crossings == 0 == adjacent_crossings(drawing, edges)
    assert boxes(drawing)["d"].y < boxes(drawing)["c"].y


def test_its_sweeps_untangle_a_reversed_three_layer_graph() -> None:
    nodes = ["a", "b", "c", "x", "y", "z", "p", "q", "r"]
    edges = [("a", "z"), ("b", "y"), ("c", "x"), ("x", "p"), ("y", "q"), ("z", "r")]
    assert layout(nodes, edges).crossings == 0
    assert adjacent_crossings(layout(nodes, edges), edges) == 0


def test_it_routes_a_long_edge_beside_the_nodes_it_passes() -> None:
    nodes, edges = ["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")]
    drawing = layout(nodes, edges)
    check_drawing(nodes, edges, drawing)
    long = drawing.edges[-1].d
    assert long.count("H") >= 2  # straight across the columns of b and c


def test_it_keeps_the_given_order_between_ties() -> None:
    children = ["k", "c", "x", "a"]
    drawing = layout(["root", *children], [("root", child) for child in children])
    ys = [boxes(drawing)[child].y for child in children]
    assert ys == sorted(ys)


def test_it_lays_out_a_fan_out_of_a_thousand_tasks() -> None:
    children = [f"task_{i:04}" for i in range(1000)]
    nodes, edges = ["start", *children], [("start", child) for child in children]
    drawing = layout(nodes, edges)
    check_drawing(nodes, edges, drawing)
    start, *rest = drawing.nodes
    assert {box.layer for box in rest} == {1}
    assert [box.y for box in rest] == sorted(box.y for box in rest)
    assert abs(centre(start) - (centre(rest[0]) + centre(rest[-1])) / 2) <= 1
    assert drawing.crossings == 0


def test_it_lays_out_a_chain_of_a_hundred_tasks_in_a_straight_line() -> None:
    nodes = [f"step{i}" for i in range(100)]
    edges = list(itertools.pairwise(nodes))
    drawing = layout(nodes, edges)
    check_drawing(nodes, edges, drawing)
    assert [box.layer for box in drawing.nodes] == list(range(100))
    assert len({box.y for box in drawing.nodes}) == 1
    assert all(re.fullmatch(r"M\d+,\d+H\d+", edge.d) for edge in drawing.edges)


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ([("a", "a")], ["a"]),
        ([("a", "b"), ("b", "c"), ("c", "b")], ["b", "c"]),
        ([("a", "b"), ("b", "c"), ("c", "d"), ("d", "b"), ("a", "d")], ["b", "c", "d"]),
    ],
)
def test_it_refuses_a_cycle_naming_its_nodes(edges: Edges, cycle: list[str]) -> None:
    with pytest.raises(ValueError, match="cycle") as error:
        layout(["a", "b", "c", "d"], edges)
    path = str(error.value).split(": ", 1)[1].split(" -> ")
    assert path[0] == path[-1]
    assert sorted(set(path)) == cycle


def test_it_refuses_an_unknown_or_repeated_node() -> None:
    with pytest.raises(ValueError, match="unknown node 'zz'"):
        layout(["a"], [("a", "zz")])
    with pytest.raises(ValueError, match="node 'a' is given twice"):
        layout(["a", "a"], [])


def test_it_draws_a_repeated_edge_once() -> None:
    drawing = layout(["a", "b"], [("a", "b"), ("a", "b")])
    assert [(e.source, e.target) for e in drawing.edges] == [("a", "b")]


def test_it_lays_out_nothing() -> None:
    drawing = layout([], [])
    assert (drawing.nodes, drawing.edges, drawing.crossings) == ([], [], 0)
    assert drawing.width > 0
    assert drawing.height > 0


def test_it_sizes_columns_by_their_widest_label_and_shortens_the_longest() -> None:
    nodes = ["a", "medium_sized_name", "x" * 100]
    drawing = layout(nodes, [("a", "medium_sized_name")], label_width=lambda text: 10 * len(text))
    a, medium, long = drawing.nodes
    assert medium.w == 10 * len("medium_sized_name") + 20
    assert a.w == long.w == MAX_NODE_WIDTH  # a column shares its widest label's width
    assert long.label.endswith("…")
    assert 10 * len(long.label) <= MAX_NODE_WIDTH - 20
    assert layout(["a"], []).nodes[0].w == MIN_NODE_WIDTH


def render_dag(**context: object) -> tuple[str, ET.Element]:
    html = render_to_string("portal/parts/dag.html", context)
    return html, ET.fromstring(html.strip())  # noqa: S314 (our own output, not untrusted)


def nodes_of(svg: ET.Element) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if "node" in g.get("class", "").split()]


def test_its_template_draws_each_task_as_a_node_with_its_state_in_words() -> None:
    nodes = ["extract", "transform", "load"]
    edges = [("extract", "transform"), ("transform", "load"), ("extract", "load")]
    html, svg = render_dag(
        dag=layout(nodes, edges),
        states={"extract": "success", "transform": "up_for_retry"},
        task_types={"extract": "http", "transform": "python", "load": "sql"},
        trigger_rules={"extract": "all_success", "transform": "all_success", "load": "all_done"},
        link={"transform": "/runs/1/tasks/transform"},
    )
    assert "style=" not in html
    assert "<script" not in html
    assert svg.tag == f"{SVG}svg"
    assert svg.get("viewBox") == f"0 0 {svg.get('width')} {svg.get('height')}"
    assert svg.get("aria-label") == "Task graph: 3 tasks, 3 dependencies"
    groups = nodes_of(svg)
    assert [g.get("class") for g in groups] == ["node st-success", "node st-up_for_retry", "node"]
    texts = [[t.text for t in g.iter(f"{SVG}text")] for g in groups]
    assert texts[0] == ["extract", "http · all_success", "✓ success"]
    assert texts[1] == ["transform", "python · all_success", "↻ up for retry"]
    assert texts[2] == ["load", "sql · all_done"]
    assert [g.find(f"{SVG}title").text for g in groups][1] == (  # type: ignore[union-attr]
        "transform (python, all_success): ↻ up for retry"
    )
    links = list(svg.iter(f"{SVG}a"))
    assert [a.get("href") for a in links] == ["/runs/1/tasks/transform"]
    assert nodes_of(links[0]) == [groups[1]]
    paths = [p for p in svg.iter(f"{SVG}path") if p.get("class") == "edge"]
    assert len(paths) == 3
    marker = svg.find(f"{SVG}defs/{SVG}marker")
    assert marker is not None
    assert {p.get("marker-end") for p in paths} == {f"url(#{marker.get('id')})"}


def test_its_template_is_an_image_without_links_and_not_localised() -> None:
    nodes = [f"t{i}" for i in range(1200)]
    drawing = layout(nodes, [])
    with translation.override("de"), override_settings(USE_THOUSAND_SEPARATOR=True):
        html, svg = render_dag(dag=drawing, states={}, task_types={}, trigger_rules={})
    assert "style=" not in html
    assert svg.get("role") == "img"
    assert len(nodes_of(svg)) == 1200
    assert re.fullmatch(r"\d+", svg.get("height", ""))  # not "86.416" nor "86,416"
    assert all(re.fullmatch(r"translate\(\d+,\d+\)", g.get("transform", "")) for g in nodes_of(svg))
