"""Geometry of a train's route graph: where each hop's box and each edge go. The template
draws it as SVG (autoescaped); the table under it says the same in text for screen readers."""

from __future__ import annotations

from dataclasses import dataclass

from central.dashboard.queries import RouteView

BOX_W, BOX_H = 96, 40
GAP_X, GAP_Y = 40, 24
LABEL_W = 140  # the station names on the left
PAD = 12


@dataclass
class Box:
    index: int
    x: int
    y: int
    status: str
    label: str
    title: str


@dataclass
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass
class Graph:
    width: int
    height: int
    boxes: list[Box]
    edges: list[Edge]
    rows: list[tuple[str, int]]  # station name, y of its row's middle


def route_svg(view: RouteView) -> Graph:
    """Columns by dependency (a hop right of every hop it reads), rows by station."""
    at: dict[int, tuple[int, int]] = {}
    boxes = []
    for hop in view.hops:
        x = LABEL_W + PAD + hop.column * (BOX_W + GAP_X)
        y = PAD + hop.row * (BOX_H + GAP_Y)
        at[hop.index] = (x, y)
        kind = "aggregate" if hop.kind == "aggregate" else "hop"
        boxes.append(
            Box(
                index=hop.index,
                x=x,
                y=y,
                status=hop.status,
                label=f"{kind} {hop.index} · r{hop.round}",
                title=f"hop {hop.index}, round {hop.round}, {hop.station}: {hop.status}",
            )
        )
    edges = [
        Edge(at[i][0] + BOX_W, at[i][1] + BOX_H // 2, at[j][0], at[j][1] + BOX_H // 2)
        for i, j in view.edges
        if i in at and j in at
    ]
    columns = 1 + max((h.column for h in view.hops), default=0)
    rows = [(name, PAD + r * (BOX_H + GAP_Y) + BOX_H // 2) for r, name in enumerate(view.stations)]
    return Graph(
        width=LABEL_W + 2 * PAD + columns * (BOX_W + GAP_X),
        height=2 * PAD + max(1, len(view.stations)) * (BOX_H + GAP_Y),
        boxes=boxes,
        edges=edges,
        rows=rows,
    )
