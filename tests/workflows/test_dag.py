"""workflows.dag on random DAGs (Hypothesis) and a few named shapes. A random DAG is made
by shuffling the nodes and letting each depend only on nodes before it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows import dag

Graph = dict[str, list[str]]
FAST = settings(max_examples=100, deadline=None)


@st.composite
def dags(draw: st.DrawFn, min_nodes: int = 1, with_an_edge: bool = False) -> Graph:
    """A DAG in a random declaration order. `with_an_edge`: the second node in the random
    permutation depends on the first, so the graph has at least one edge."""
    count = draw(st.integers(min_value=max(min_nodes, 2 if with_an_edge else 1), max_value=12))
    nodes = draw(st.permutations([f"t{i}" for i in range(count)]))
    graph: Graph = {}
    for index, node in enumerate(nodes):
        earlier = nodes[:index]
        ups = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        if with_an_edge and index == 1 and nodes[0] not in ups:
            ups.append(nodes[0])
        graph[node] = ups
    declared = draw(st.permutations(list(graph)))
    return {node: graph[node] for node in declared}


def edges(graph: Graph) -> list[tuple[str, str]]:
    """(upstream, downstream) pairs."""
    return [(up, node) for node, ups in graph.items() for up in ups]


def reachable_upstream(graph: Graph, node: str) -> set[str]:
    """The reference answer: a fixpoint over the edges, nothing clever."""
    found = set(graph[node])
    while True:
        more = found | {u for f in found for u in graph[f]}
        if more == found:
            return found
        found = more


@FAST
@given(dags())
def test_it_orders_every_task_after_its_upstreams(graph: Graph) -> None:
    assert dag.find_cycle(graph) is None
    order = dag.topological_order(graph)
    assert sorted(order) == sorted(graph)
    position = {node: i for i, node in enumerate(order)}
    for up, down in edges(graph):
        assert position[up] < position[down]


@FAST
@given(dags())
def test_it_puts_each_task_in_a_layer_after_its_upstreams(graph: Graph) -> None:
    layers = dag.layers(graph)
    layer_of = {node: i for i, layer in enumerate(layers) for node in layer}
    assert sorted(layer_of) == sorted(graph)
    assert sum(len(layer) for layer in layers) == len(graph)
    assert all(layers)
    for up, down in edges(graph):
        assert layer_of[up] < layer_of[down]
    for node, ups in graph.items():  # the longest path from a root, not just any order
        assert layer_of[node] == 1 + max((layer_of[u] for u in ups), default=-1)


@FAST
@given(dags(), st.data())
def test_it_finds_upstreams_and_downstreams_consistently(graph: Graph, data: st.DataObject) -> None:
    for y in graph:
        assert dag.upstream_of(graph, y) == reachable_upstream(graph, y)
    for x in graph:
        below = dag.downstream_of(graph, {x})
        assert x not in below
        for y in graph:
            assert (x in dag.upstream_of(graph, y)) == (y in below)
    starts = data.draw(st.sets(st.sampled_from(sorted(graph))))  # several: the union
    union = set().union(*(dag.downstream_of(graph, {s}) for s in starts))
    assert dag.downstream_of(graph, starts) == union


@FAST
@given(dags(with_an_edge=True), st.data())
def test_it_reports_any_back_edge_as_a_cycle(graph: Graph, data: st.DataObject) -> None:
    pairs = sorted((a, d) for d in graph for a in dag.upstream_of(graph, d))
    ancestor, descendant = data.draw(st.sampled_from(pairs))
    cyclic = {**graph, ancestor: [*graph[ancestor], descendant]}  # upstream needs downstream

    cycle = dag.find_cycle(cyclic)

    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1 >= 2
    for node, up in itertools.pairwise(cycle):  # each depends on the next
        assert up in cyclic[node]
    with pytest.raises(ValueError, match="graph has a cycle"):
        dag.topological_order(cyclic)
    with pytest.raises(ValueError, match="graph has a cycle"):
        dag.layers(cyclic)


def test_it_keeps_declaration_order_between_independent_tasks() -> None:
    graph = {"b": [], "a": [], "c": ["b"], "d": []}
    assert dag.topological_order(graph) == ["b", "a", "d", "c"]


def test_it_layers_a_diamond() -> None:
    graph = {"end": ["left", "right"], "left": ["start"], "right": ["start"], "start": []}
    assert dag.layers(graph) == [["start"], ["left", "right"], ["end"]]
    assert dag.downstream(graph) == {
        "end": [],
        "left": ["end"],
        "right": ["end"],
        "start": ["left", "right"],
    }


def test_it_names_a_cycle_as_a_closed_path() -> None:
    graph = {"a": ["c"], "b": ["a"], "c": ["b"], "d": []}
    assert dag.find_cycle(graph) == ["a", "c", "b", "a"]
    assert dag.find_cycle({"a": ["a"]}) == ["a", "a"]


def test_it_handles_a_chain_longer_than_the_recursion_limit() -> None:
    graph = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(5000)}
    assert dag.find_cycle(graph) is None
    assert dag.topological_order(graph) == list(graph)
    assert len(dag.upstream_of(graph, "t4999")) == 4999
    graph["t0"] = ["t4999"]
    assert dag.find_cycle(graph) is not None


def test_it_ignores_upstreams_that_are_not_in_the_graph() -> None:
    graph = {"a": ["elsewhere"], "b": ["a"]}
    assert dag.topological_order(graph) == ["a", "b"]
    assert dag.upstream_of(graph, "b") == {"a"}
    assert dag.find_cycle(graph) is None
