"""FlowSim: the paper's tree-edit-distance similarity between two flows.

FlowSim(c, r) = 1 - TED(T_c, T_r) / (|T_c| + |T_r|), with the Zhang-Shasha tree edit distance
and the costs of ServiceNow's published implementation (StarFlow). This module reproduces
that implementation's behaviour exactly, quirks included (SPEC section 3):

* raw text: a ```json fenced block is cut out first, text that is not JSON becomes the empty
  flow ``{"trigger": null, "components": []}``, no other repair is attempted;
* |T| counts the node lines of the tree's printed form whose first field is not a free label,
  so empty labels are counted while their insertion is free;
* anything that makes the published implementation raise (a trigger type that is not a
  string, an input without a string name, ...) scores 0 for that example instead.

No input raises or stalls: a flow beyond one of the caps of :mod:`wfutils.flows.limits` (text
length ``MAX_FLOW_CHARS``, JSON depth ``MAX_JSON_DEPTH``, integer digits ``MAX_INT_DIGITS``,
``MAX_COMPONENTS``, tree nodes ``MAX_TREE_NODES`` -- repeated ``order`` numbers under ``block``
chains blow the tree up exponentially --, tree depth ``MAX_TREE_DEPTH`` and Zhang-Shasha work
``MAX_TREE_WORK``) scores 0 like any other failure; its :class:`TreeError` has ``reason``
``too_large`` or ``too_deep`` and a message naming the cap. Below the caps the scores are exactly
those of the plain computation.

The distance itself is a compiled (numba) Zhang-Shasha on integer-coded labels; trees are
built once per distinct flow and cached. :func:`reference_flow_similarity` runs the plain
per-pair ``zss`` computation, uncapped, for cross-checks and benchmarks.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numba import njit

from wfutils.flows import limits
from wfutils.flows.limits import (MAX_COMPONENTS, MAX_TREE_DEPTH, MAX_TREE_NODES, MAX_TREE_WORK, LimitExceeded,
                                  value_problem)
from wfutils.flows.vocabulary import COMPONENT_CATEGORIES, CONDITION_INPUTS, TRIGGER_TYPES, VALUE_INPUTS
from wfutils.flows.vocabulary import trigger_type as _trigger_type

# Labels whose insertion and deletion are free, as in the published implementation.
FREE_LABELS = frozenset({"flow", "trigger", "components", "inputs", "outputs"}) | CONDITION_INPUTS | VALUE_INPUTS
_HEAVY_TRIGGER_LABELS = frozenset(TRIGGER_TYPES)
EMPTY_FLOW: dict[str, Any] = {"trigger": None, "components": []}

# Order matters: the regular expressions try alternatives left to right, as the published code does.
LOGICAL_OPERATORS = ("^EQ", "^OR", "^NQ", "^", "OR")
COMPARISON_OPERATORS = (
    "VALCHANGES", "RELATIVEGT", "RELATIVEGE", "RELATIVELE", "RELATIVELT", "BETWEEN",
    "CHANGESTO", "CHANGESFROM", "EMPTYSTRING", "ISEMPTY", "ISNOTEMPTY", "STARTSWITH",
    "ENDSWITH", "SAMEAS", "NOTON", "NOT LIKE", "NOT IN", "LIKE", "NOT", "IN", "ON",
    "!=", ">=", "<=", "=", ">", "<",
)
_LOGICAL_RE = re.compile("|".join(re.escape(op) for op in LOGICAL_OPERATORS))
# A comparison operator preceded by an upper-case letter, '=' or ',' is part of a word or value.
_COMPARISON_RE = re.compile(r"(?<![A-Z=,])(" + "|".join(re.escape(op) for op in COMPARISON_OPERATORS) + ")")
_NODE_LINE_RE = re.compile(r"^\d+:")


class Node:
    """A labelled ordered tree node (the FlowSim tree)."""

    __slots__ = ("label", "children")

    def __init__(self, label: Any, children: list["Node"] | None = None) -> None:
        self.label = label
        self.children = children if children is not None else []

    def add(self, child: "Node") -> "Node":
        self.children.append(child)
        return self

    def render(self) -> str:
        """The printed form the published implementation counts |T| on: ``<#children>:<label>`` per node, pre-order."""
        lines: list[str] = []
        stack = [self]
        while stack:
            node = stack.pop()
            lines.append(f"{len(node.children)}:{node.label}")
            stack.extend(reversed(node.children))
        return "\n".join(lines)

    def pretty(self, indent: str = "  ") -> str:
        """Indented text view of the tree, one label per line."""
        out: list[str] = []

        def walk(node: Node, depth: int) -> None:
            out.append(f"{indent * depth}{node.label}")
            for child in node.children:
                walk(child, depth + 1)

        walk(self, 0)
        return "\n".join(out)


# --------------------------------------------------------------------------- text -> flow

def _published_flow_text(text: str) -> str:
    """The part of model text the published metric decodes: the ```json fenced block, else the whole text."""
    if "```json" in text:
        start = text.find("```json") + len("```json")
        text = text[start:text.rfind("```")].strip()
    return text.strip().removeprefix("```json").removesuffix("```").strip()


def load_flow_text(text: str) -> Any:
    """Parse model text the way the published metric does (fenced block, else whole text; non-JSON -> empty flow).

    Raises :class:`~wfutils.flows.limits.LimitExceeded` for text beyond the caps (length, JSON
    depth, integer digits) instead of decoding it; :func:`metric_flow` never raises.
    """
    limits.check_text(text)
    try:
        return limits.loads(_published_flow_text(text))
    except json.JSONDecodeError:
        return {"trigger": None, "components": []}


def _published_load_flow_text(text: str) -> Any:
    """The published loader itself, uncapped (for :func:`reference_flow_similarity`)."""
    try:
        return json.loads(_published_flow_text(text))
    except json.JSONDecodeError:
        return {"trigger": None, "components": []}


# --------------------------------------------------------------------------- encoded queries

def _split_encoded_query(query: str) -> tuple[list[dict[str, str]] | None, list[str] | None]:
    if query in ("^EQ", "a to z"):  # the published implementation's known exceptions
        return None, None
    operators = _LOGICAL_RE.findall(query)
    found = set(operators)  # membership as in the published list test, without its quadratic cost
    parts = [p for p in _LOGICAL_RE.split(query) if p.strip() not in found]
    parsed: list[dict[str, str]] = []
    for part in parts:
        comparisons = _COMPARISON_RE.findall(part)
        found = set(comparisons)
        pieces = [p for p in _COMPARISON_RE.split(part) if p.strip() not in found]
        if len(pieces) != 2 or len(comparisons) != 1:
            return None, None
        parsed.append({"field": pieces[0], "operator": comparisons[0], "value": pieces[1]})
    return parsed, operators


def _parts_tree(parts: list[dict[str, str]], operators: list[str]) -> Node:
    first = parts[0]
    leaf = Node(first.get("field", ""), [Node(first.get("operator", "^EQ")), Node(first.get("value", ""))])
    if not operators:
        return leaf
    return Node(operators[0], [leaf, _parts_tree(parts[1:], operators[1:])])


class _Budget:
    """Running node count of a tree under construction (bounded mode): raises past :data:`MAX_TREE_NODES`."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes = 0

    def take(self, count: int = 1) -> None:
        self.nodes += count
        if self.nodes > MAX_TREE_NODES:
            raise LimitExceeded("too_large", "MAX_TREE_NODES",
                                f"the flow's FlowSim tree has more than {MAX_TREE_NODES:,} nodes")


def _too_deep_tree() -> LimitExceeded:
    return LimitExceeded("too_deep", "MAX_TREE_DEPTH", f"the flow's FlowSim tree is more than {MAX_TREE_DEPTH} levels deep")


def encoded_query_tree(query: str, budget: _Budget | None = None) -> Node:
    """Tree of an encoded query: parts sorted by field, logical operators sorted; '' if unparseable."""
    parts, operators = _split_encoded_query(query)
    if parts is None and operators is None:
        if budget is not None:
            budget.take()
        return Node("")
    if budget is not None:  # k parts: a chain of k - 1 operators over leaves of 3 nodes, k + 1 levels
        if len(parts) > MAX_TREE_DEPTH:
            raise _too_deep_tree()
        budget.take(4 * len(parts) - 1)
    parts = sorted(parts, key=lambda p: p.get("field", ""))
    return _parts_tree(parts, sorted(operators))


# --------------------------------------------------------------------------- flow -> tree

def _input_tree(item: Any, decompose: bool, budget: _Budget | None = None) -> Node:
    name = item.get("name", "")
    value = str(item.get("value", ""))
    if decompose and (name in CONDITION_INPUTS or name in VALUE_INPUTS):
        if budget is not None:
            budget.take()
        return Node(name, [encoded_query_tree(value, budget)])
    label = name + ": " + value
    if budget is not None:
        budget.take()
    return Node(label)


def _inputs_tree(items: Any, decompose: bool, budget: _Budget | None = None) -> Node:
    node = Node("inputs")
    if budget is not None:
        budget.take()
    for item in sorted(items, key=lambda x: x.get("name", "")):
        node.add(_input_tree(item, decompose, budget))
    return node


def _trigger_tree(trigger: Any, with_inputs: bool, budget: _Budget | None = None) -> Node:
    node = Node("trigger")
    if trigger is None:
        return node
    type_node = Node(trigger.get("type", ""))
    if with_inputs and "inputs" in trigger:
        type_node.add(_inputs_tree(trigger.get("inputs", []), True, budget))
    return node.add(type_node)


def _subflow_io_tree(io: Any, label: str, budget: _Budget | None = None) -> Node:
    node = Node(label)
    if io is None:
        return node
    for item in io.get("items", []):
        kind = item.get("type", "string")
        text = f"{item.get('name', '')}: {kind}"
        if kind in ("reference", "records") and "reference" in item:
            text += f" [{item.get('reference', 'task')}]"
        if budget is not None:
            budget.take()
        node.add(Node(text))
    return node


def component_label(component: dict[str, Any]) -> str:
    """``category___definition___scope`` with the published defaults (action, global; flow logic upper-cased)."""
    category = component.get("category", "action")
    definition = component.get("definition", "")
    if category == "flowlogic":
        definition = definition.upper()
    return f"{category}___{definition}___{component.get('scope', 'global')}"


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value))  # bools included


class _Children:
    """The components nested under a component of a given ``order``, for bounded construction.

    The published loop scans every component for every node it builds (``other.order > order``
    and ``other.block == order``), which costs nodes x components. Here each component's order
    and block are read once; when every order is a number (no comparison can fail) the children
    come from an index by ``block``, else each distinct order is scanned once, with the published
    comparisons in the published order. Either way the children are the published ones, in the
    published order.
    """

    def __init__(self, components: Any) -> None:
        self.entries = [(other, other.get("order", -999), other.get("block", -999)) for other in components]
        self.memo: dict[Any, list[Any]] = {}
        self.index: dict[Any, list[tuple[Any, Any]]] | None = None
        if all(_is_real(order) for _, order, _ in self.entries):
            self.index = {}
            for other, order, block in self.entries:
                try:
                    hash(block)
                except TypeError:  # an unhashable block equals no number
                    continue
                if isinstance(block, float) and math.isnan(block):  # NaN equals nothing
                    continue
                self.index.setdefault(block, []).append((other, order))

    def __call__(self, order: Any) -> list[Any]:
        if self.index is not None and _is_real(order):
            return [other for other, other_order in self.index.get(order, ()) if not other_order <= order]
        try:
            key: Any = (type(order), order)
            hash(key)
        except TypeError:
            key = None
        found = self.memo.get(key) if key is not None else None
        if found is None:
            found = [other for other, other_order, block in self.entries if not other_order <= order and block == order]
            if key is not None:
                self.memo[key] = found
        return found


def _component_tree(component: Any, components: Any, with_inputs: bool, budget: _Budget | None = None,
                    level: int = 3, children: _Children | None = None) -> Node:
    node = Node(component_label(component))
    if budget is not None:  # level: depth of this node (flow, components, then the top-level components)
        if level > MAX_TREE_DEPTH:
            raise _too_deep_tree()
        budget.take()
    order = component.get("order", -100)
    if with_inputs and "inputs" in component:
        node.add(_inputs_tree(component.get("inputs", []), True, budget))
    if children is not None:
        for other in children(order):
            node.add(_component_tree(other, components, with_inputs, budget, level + 1, children))
        return node
    for other in components:
        if other.get("order", -999) <= order:
            continue
        if other.get("block", -999) == order:
            node.add(_component_tree(other, components, with_inputs, budget, level + 1))
    return node


def flow_tree(flow: Any, *, with_inputs: bool = True, bounded: bool = False) -> Node:
    """Build the FlowSim tree of a parsed flow (raises on structures the published code cannot handle).

    ``bounded`` (as :func:`flow_similarity` builds trees): raise
    :class:`~wfutils.flows.limits.LimitExceeded` as soon as the flow has more than
    ``MAX_COMPONENTS`` components or the tree passes ``MAX_TREE_NODES`` nodes or
    ``MAX_TREE_DEPTH`` levels, instead of building it; the tree is otherwise the same (built in
    time linear in its size, see :class:`_Children`).
    """
    budget = _Budget() if bounded else None
    root = Node("flow")
    if "trigger" in flow:
        root.add(_trigger_tree(flow.get("trigger", None), with_inputs, budget))
    if "inputs" in flow:
        root.add(_subflow_io_tree(flow.get("inputs", []), "inputs", budget))
    if "outputs" in flow:
        root.add(_subflow_io_tree(flow.get("outputs", []), "outputs", budget))
    if "components" in flow:
        components = flow.get("components", [])
        if bounded and isinstance(components, (list, tuple)) and len(components) > MAX_COMPONENTS:
            raise LimitExceeded("too_large", "MAX_COMPONENTS",
                                f"the flow has {len(components):,} components, more than {MAX_COMPONENTS:,}")
        node = Node("components")
        children = _Children(components) if bounded else None
        for component in components:
            if component.get("block") is None:
                node.add(_component_tree(component, components, with_inputs, budget, 3, children))
        root.add(node)
    return root


def tree_size(tree: Node) -> int:
    """|T|: node lines of the printed tree whose first field is not a free label."""
    return _count_node_lines(tree.render())


def _count_node_lines(rendered: str) -> int:
    count = 0
    for line in rendered.split("\n"):
        if line and _NODE_LINE_RE.match(line) and line.split(":")[1] not in FREE_LABELS:
            count += 1
    return count


# --------------------------------------------------------------------------- costs

def node_cost(label: str) -> int:
    """Cost of inserting or deleting a node: free labels and the empty label cost 0."""
    return 0 if label in FREE_LABELS or label == "" else 1


def _is_heavy(label: str) -> bool:
    return label in _HEAVY_TRIGGER_LABELS or label.startswith(COMPONENT_CATEGORIES)


def relabel_cost(a: str, b: str) -> int:
    """Cost of relabelling a into b: 0 if equal, 2 for trigger types and components, else 1."""
    if a == b:
        return 0
    return 2 if _is_heavy(a) or _is_heavy(b) else 1


# --------------------------------------------------------------------------- compiled Zhang-Shasha

_LABEL_IDS: dict[str, int] = {}


def _label_id(label: str) -> int:
    found = _LABEL_IDS.get(label)
    if found is None:
        found = _LABEL_IDS[label] = len(_LABEL_IDS)
    return found


@dataclass(frozen=True)
class PreparedTree:
    """A FlowSim tree in post-order arrays, ready for the compiled distance."""

    labels: tuple[str, ...]
    parents: np.ndarray  # post-order index of each node's parent (-1 for the root)
    lmd: np.ndarray  # left-most leaf descendant of each node
    keyroots: np.ndarray
    ids: np.ndarray
    heavy: np.ndarray
    cost: np.ndarray
    size: int  # |T|
    depth: int = 0  # nodes on the longest root-to-leaf path
    work: int = 0  # Zhang-Shasha work: summed sizes of the keyroot subtrees (a distance costs work1 x work2)


class TreeError(ValueError):
    """The flow cannot be turned into a FlowSim tree: the published code would raise (``reason`` ``invalid``),
    or the flow is beyond a cap of :mod:`wfutils.flows.limits` (``reason`` ``too_large`` / ``too_deep``)."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


def prepare_tree(tree: Node) -> PreparedTree:
    """Post-order arrays of a tree: labels, parents, left-most leaves, keyroots, costs."""
    order: list[Node] = []  # post-order, children left to right
    depth = 0
    stack: list[tuple[Node, bool, int]] = [(tree, False, 1)]
    while stack:
        node, expanded, level = stack.pop()
        if expanded:
            order.append(node)
            continue
        depth = max(depth, level)
        stack.append((node, True, level))
        stack.extend((child, False, level + 1) for child in reversed(node.children))
    index_of = {id(node): index for index, node in enumerate(order)}
    labels: list[str] = []
    lmd: list[int] = []
    parents = [-1] * len(order)
    for index, node in enumerate(order):
        if not isinstance(node.label, str):
            raise TreeError(f"label {node.label!r} is not a string")
        labels.append(node.label)
        for child in node.children:
            parents[index_of[id(child)]] = index
        lmd.append(lmd[index_of[id(node.children[0])]] if node.children else index)
    keyroot_of: dict[int, int] = {}
    for index, left in enumerate(lmd):
        keyroot_of[left] = index
    work = sum(index - lmd[index] + 1 for index in keyroot_of.values())
    return PreparedTree(
        labels=tuple(labels),
        parents=np.asarray(parents, dtype=np.int64),
        lmd=np.asarray(lmd, dtype=np.int64),
        keyroots=np.asarray(sorted(keyroot_of.values()), dtype=np.int64),
        ids=np.asarray([_label_id(label) for label in labels], dtype=np.int64),
        heavy=np.asarray([_is_heavy(label) for label in labels], dtype=np.bool_),
        cost=np.asarray([node_cost(label) for label in labels], dtype=np.float64),
        size=_size_from_labels(labels) if not any("\n" in label for label in labels) else tree_size(tree),
        depth=depth,
        work=work,
    )


def _size_from_labels(labels: list[str]) -> int:
    # Without newlines each node is one printed line "<n>:<label>", counted unless the label's
    # first ':'-separated field is a free label.
    return sum(1 for label in labels if label.split(":", 1)[0] not in FREE_LABELS)


# The inner forest loop of _forest_table, inlined here on purpose: one compiled call per tree pair,
# without a call and a fresh forest array per keyroot pair, is what makes the batch scorer fast.
@njit(cache=True, nogil=True)
def _tree_distances(lmd1, keyroots1, ids1, heavy1, cost1, lmd2, keyroots2, ids2, heavy2, cost2):  # pragma: no cover - compiled
    n1 = lmd1.shape[0]
    n2 = lmd2.shape[0]
    treedist = np.zeros((n1, n2))
    forest = np.zeros((n1 + 1, n2 + 1))
    for i in keyroots1:
        li = lmd1[i]
        m = i - li + 2
        for j in keyroots2:
            lj = lmd2[j]
            n = j - lj + 2
            forest[0, 0] = 0.0
            for x in range(1, m):
                forest[x, 0] = forest[x - 1, 0] + cost1[x + li - 1]
            for y in range(1, n):
                forest[0, y] = forest[0, y - 1] + cost2[y + lj - 1]
            for x in range(1, m):
                a = x + li - 1
                for y in range(1, n):
                    b = y + lj - 1
                    remove = forest[x - 1, y] + cost1[a]
                    insert = forest[x, y - 1] + cost2[b]
                    if lmd1[a] == li and lmd2[b] == lj:
                        if ids1[a] == ids2[b]:
                            update = 0.0
                        elif heavy1[a] or heavy2[b]:
                            update = 2.0
                        else:
                            update = 1.0
                        best = min(remove, insert, forest[x - 1, y - 1] + update)
                        forest[x, y] = best
                        treedist[a, b] = best
                    else:
                        p = lmd1[a] - li
                        q = lmd2[b] - lj
                        forest[x, y] = min(remove, insert, forest[p, q] + treedist[a, b])
    return treedist


@njit(cache=True, nogil=True)
def _forest_table(i, j, lmd1, ids1, heavy1, cost1, lmd2, ids2, heavy2, cost2, treedist):  # pragma: no cover - compiled
    li = lmd1[i]
    lj = lmd2[j]
    m = i - li + 2
    n = j - lj + 2
    forest = np.zeros((m, n))
    for x in range(1, m):
        forest[x, 0] = forest[x - 1, 0] + cost1[x + li - 1]
    for y in range(1, n):
        forest[0, y] = forest[0, y - 1] + cost2[y + lj - 1]
    for x in range(1, m):
        a = x + li - 1
        for y in range(1, n):
            b = y + lj - 1
            if lmd1[a] == li and lmd2[b] == lj:
                if ids1[a] == ids2[b]:
                    update = 0.0
                elif heavy1[a] or heavy2[b]:
                    update = 2.0
                else:
                    update = 1.0
                diagonal = forest[x - 1, y - 1] + update
            else:
                diagonal = forest[lmd1[a] - li, lmd2[b] - lj] + treedist[a, b]
            forest[x, y] = min(forest[x - 1, y] + cost1[a], forest[x, y - 1] + cost2[b], diagonal)
    return forest


def _distance_matrix(t1: PreparedTree, t2: PreparedTree) -> np.ndarray:
    return _tree_distances(t1.lmd, t1.keyroots, t1.ids, t1.heavy, t1.cost,
                           t2.lmd, t2.keyroots, t2.ids, t2.heavy, t2.cost)


def tree_edit_distance(t1: PreparedTree, t2: PreparedTree) -> float:
    """Zhang-Shasha distance between two prepared trees with the FlowSim costs."""
    return float(_distance_matrix(t1, t2)[-1, -1])


# --------------------------------------------------------------------------- public scoring API

def metric_flow(flow_or_text: Any) -> Any:
    """The flow as the metric sees it: text parsed as :func:`load_flow_text` parses it, anything else as is.

    Never raises: text beyond the caps of :mod:`wfutils.flows.limits` gives None (not a flow: no
    trigger, no components). The functions that read a flow check the values they use.
    """
    if isinstance(flow_or_text, str):
        try:
            return load_flow_text(flow_or_text)
        except LimitExceeded:
            return None
    return flow_or_text


_as_flow = metric_flow


def _cache_key(flow_or_text: Any) -> str | None:
    if isinstance(flow_or_text, str):
        return "t" + flow_or_text
    try:
        return "j" + json.dumps(flow_or_text, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None


_TREE_CACHE: dict[tuple[str, bool], PreparedTree | TreeError] = {}
_TREE_CACHE_LIMIT = 200_000  # entries
_TREE_CACHE_CHARS_LIMIT = 200_000_000  # characters of the keys (the texts and flows themselves)
_tree_cache_chars = 0


def clear_tree_cache() -> None:
    """Forget every cached tree (benchmarks use it to measure tree construction too)."""
    global _tree_cache_chars
    _TREE_CACHE.clear()
    _tree_cache_chars = 0


def _limit_error(exc: LimitExceeded) -> TreeError:
    return TreeError(str(exc), reason=exc.status)


def _check_tree(tree: PreparedTree) -> None:
    if len(tree.labels) > MAX_TREE_NODES:  # pragma: no cover - the construction budget stops it first
        raise LimitExceeded("too_large", "MAX_TREE_NODES", f"the flow's FlowSim tree has more than {MAX_TREE_NODES:,} nodes")
    if tree.depth > MAX_TREE_DEPTH:
        raise LimitExceeded("too_deep", "MAX_TREE_DEPTH",
                            f"the flow's FlowSim tree is {tree.depth} levels deep, more than {MAX_TREE_DEPTH}")
    if tree.work > MAX_TREE_WORK:
        raise LimitExceeded("too_large", "MAX_TREE_WORK",
                            f"the flow's FlowSim tree needs Zhang-Shasha work {tree.work:,}, more than {MAX_TREE_WORK:,}")


def _prepare_or_error(flow_or_text: Any, with_inputs: bool) -> PreparedTree | TreeError:
    try:
        if isinstance(flow_or_text, str):
            flow = load_flow_text(flow_or_text)
        else:
            flow = flow_or_text
            limits.check_value(flow, size=False)  # the size is checked on the cache key
        tree = prepare_tree(flow_tree(flow, with_inputs=with_inputs, bounded=True))
        _check_tree(tree)
        return tree
    except LimitExceeded as exc:
        return _limit_error(exc)
    except Exception as exc:  # noqa: BLE001 - the published metric scores any such failure as 0
        return TreeError(f"{type(exc).__name__}: {exc}")


def prepared(flow_or_text: Any, *, with_inputs: bool = True) -> PreparedTree | TreeError:
    """The cached prepared tree of a flow (dict or raw text), or the error that prevents one (never raises).

    A :class:`TreeError` says why: ``reason`` ``invalid`` (the published code would raise) or the
    cap of :mod:`wfutils.flows.limits` the flow is beyond (``too_large`` / ``too_deep``).
    """
    global _tree_cache_chars
    if isinstance(flow_or_text, str):
        try:
            limits.check_text(flow_or_text)  # before anything is done with the text, even caching it
        except LimitExceeded as exc:
            return _limit_error(exc)
    key = _cache_key(flow_or_text)
    if key is not None:
        if len(key) - 1 > limits.MAX_FLOW_CHARS:
            return TreeError(f"too_large: the flow's JSON has {len(key) - 1:,} characters, more than "
                             f"{limits.MAX_FLOW_CHARS:,} (MAX_FLOW_CHARS)", reason="too_large")
        found = _TREE_CACHE.get((key, with_inputs))
        if found is not None:
            return found
    result = _prepare_or_error(flow_or_text, with_inputs)
    if key is not None:
        if len(_TREE_CACHE) >= _TREE_CACHE_LIMIT or _tree_cache_chars + len(key) > _TREE_CACHE_CHARS_LIMIT:
            clear_tree_cache()
        _TREE_CACHE[(key, with_inputs)] = result
        _tree_cache_chars += len(key)
    return result


def _similarity(t1: PreparedTree, t2: PreparedTree) -> float:
    if t1.size == 0 and t2.size == 0:
        return 1.0
    return 1.0 - tree_edit_distance(t1, t2) / (t1.size + t2.size)


def flow_similarity(candidate: Any, reference: Any, *, with_inputs: bool = True) -> float:
    """FlowSim of one candidate against one reference (dicts or raw model text); never raises."""
    t1 = prepared(candidate, with_inputs=with_inputs)
    t2 = prepared(reference, with_inputs=with_inputs)
    if isinstance(t1, TreeError) or isinstance(t2, TreeError):
        return 0.0
    try:
        return _similarity(t1, t2)
    except Exception:  # noqa: BLE001 - scoring errors give 0, as in the published metric
        return 0.0


def flow_similarities(candidates: Sequence[Any], references: Sequence[Any], *, with_inputs: bool = True) -> np.ndarray:
    """FlowSim of each (candidate, reference) pair, as an array."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
    return np.fromiter(
        (flow_similarity(c, r, with_inputs=with_inputs) for c, r in zip(candidates, references)),
        dtype=np.float64, count=len(candidates),
    )


def corpus_flow_similarity(candidates: Sequence[Any], references: Sequence[Any], *, with_inputs: bool = True) -> float:
    """Macro mean of FlowSim over pairs (0 for an empty corpus, as published)."""
    scores = flow_similarities(candidates, references, with_inputs=with_inputs)
    return float(scores.mean()) if len(scores) else 0.0


# --------------------------------------------------------------------------- edit script

@dataclass(frozen=True)
class EditOperation:
    """One step of the aligned edit script that turns the candidate tree into the reference tree.

    kind: ``match`` (same label, cost 0), ``update`` (relabel), ``delete`` (node only in the
    candidate: extra), ``insert`` (node only in the reference: missing). Paths are the labels
    from the root down to the node, in the candidate / reference tree.
    """

    kind: str
    cost: float
    candidate: str | None
    reference: str | None
    candidate_path: tuple[str, ...] = ()
    reference_path: tuple[str, ...] = ()


def _paths(tree: PreparedTree) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = [()] * len(tree.labels)
    for index in range(len(tree.labels) - 1, -1, -1):  # parents come after children in post-order
        parent = int(tree.parents[index])
        paths[index] = (paths[parent] if parent >= 0 else ()) + (tree.labels[index],)
    return paths


def _edit_script(t1: PreparedTree, t2: PreparedTree) -> list[EditOperation]:
    treedist = _distance_matrix(t1, t2)
    paths1, paths2 = _paths(t1), _paths(t2)

    def delete(a: int) -> EditOperation:
        return EditOperation("delete", float(t1.cost[a]), t1.labels[a], None, paths1[a], ())

    def insert(b: int) -> EditOperation:
        return EditOperation("insert", float(t2.cost[b]), None, t2.labels[b], (), paths2[b])

    def subtree(i: int, j: int) -> list[EditOperation]:
        li, lj = int(t1.lmd[i]), int(t2.lmd[j])
        m, n = i - li + 2, j - lj + 2
        # the forest distances of the pair (compiled; the same sums as the distance itself)
        forest = _forest_table(i, j, t1.lmd, t1.ids, t1.heavy, t1.cost, t2.lmd, t2.ids, t2.heavy, t2.cost, treedist)
        backwards: list[EditOperation] = []
        x, y = m - 1, n - 1
        # Prefer mapping nodes onto each other on ties, so a wrong step reads as a relabel
        # rather than a deletion plus an insertion of the same total cost.
        while x > 0 or y > 0:
            a, b = x + li - 1, y + lj - 1
            if x > 0 and y > 0:
                whole = t1.lmd[a] == li and t2.lmd[b] == lj
                if whole:
                    relabel = relabel_cost(t1.labels[a], t2.labels[b])
                    if forest[x, y] == forest[x - 1, y - 1] + relabel:
                        kind = "match" if relabel == 0 else "update"
                        backwards.append(EditOperation(kind, float(relabel), t1.labels[a], t2.labels[b], paths1[a], paths2[b]))
                        x -= 1
                        y -= 1
                        continue
                else:
                    p, q = int(t1.lmd[a] - li), int(t2.lmd[b] - lj)
                    if forest[x, y] == forest[p, q] + treedist[a, b]:
                        backwards.extend(reversed(subtree(a, b)))
                        x, y = p, q
                        continue
            if x > 0 and forest[x, y] == forest[x - 1, y] + t1.cost[a]:
                backwards.append(delete(a))
                x -= 1
            else:
                backwards.append(insert(b))
                y -= 1
        return backwards[::-1]

    return subtree(len(t1.labels) - 1, len(t2.labels) - 1)


def edit_operations(candidate: Any, reference: Any, *, with_inputs: bool = True) -> list[EditOperation]:
    """The aligned edit script (post-order) behind FlowSim; its costs add up to the tree edit distance.

    Returns an empty list when either flow cannot be turned into a tree (FlowSim scores it 0).
    """
    t1 = prepared(candidate, with_inputs=with_inputs)
    t2 = prepared(reference, with_inputs=with_inputs)
    if isinstance(t1, TreeError) or isinstance(t2, TreeError):
        return []
    return _edit_script(t1, t2)


# --------------------------------------------------------------------------- auxiliary metrics

def trigger_match(candidate: Any, reference: Any) -> bool:
    """True when both flows have the same trigger type (text parsed as FlowSim parses it; never raises)."""
    c, r = _trigger_type(_as_flow(candidate)), _trigger_type(_as_flow(reference))
    if value_problem(c, size=False) is not None or value_problem(r, size=False) is not None:
        return False  # a type beyond the caps (only in a flow built in Python)
    try:
        return bool(c is not None and c == r)
    except Exception:  # noqa: BLE001 - a type whose comparison fails is no match
        return False


def _component_labels(flow: Any) -> Counter[str]:
    labels: Counter[str] = Counter()
    if not isinstance(flow, dict) or not isinstance(flow.get("components"), list):
        return labels
    for component in flow["components"]:
        if not isinstance(component, dict):
            continue
        if any(value_problem(component.get(name), size=False) is not None for name in ("category", "definition", "scope")):
            labels["invalid___invalid___invalid"] += 1  # beyond the caps (only in a flow built in Python)
            continue
        try:
            labels[component_label(component)] += 1
        except (AttributeError, TypeError):
            labels[f"{component.get('category')}___{component.get('definition')}___invalid"] += 1
    return labels


def component_match(candidate: Any, reference: Any) -> dict[str, float]:
    """Bag-of-components precision, recall and F1 (components compared by category, definition, scope).

    Text is parsed as FlowSim parses it; output beyond the caps counts as no flow. Never raises.
    """
    c, r = _component_labels(_as_flow(candidate)), _component_labels(_as_flow(reference))
    if not c and not r:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    common = sum((c & r).values())
    precision = common / sum(c.values()) if c else 0.0
    recall = common / sum(r.values()) if r else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# --------------------------------------------------------------------------- plain zss reference

def _published_as_flow(flow_or_text: Any) -> Any:
    return _published_load_flow_text(flow_or_text) if isinstance(flow_or_text, str) else flow_or_text


def _to_zss(node: Node) -> Any:
    import zss

    out = zss.Node(node.label)
    for child in node.children:
        out.addkid(_to_zss(child))
    return out


def reference_flow_similarity(candidate: Any, reference: Any, *, with_inputs: bool = True,
                              return_operations: bool = True) -> float:
    """FlowSim by the plain per-pair ``zss`` computation, as the published implementation runs it.

    Slow (pure Python; with ``return_operations`` it also builds every partial edit script,
    as the published code does); use it to cross-check :func:`flow_similarity`. Uncapped: it
    may take exponential time on flows beyond the caps of :mod:`wfutils.flows.limits`, where
    :func:`flow_similarity` gives 0.
    """
    import zss

    try:
        tree1 = flow_tree(_published_as_flow(candidate), with_inputs=with_inputs)
        tree2 = flow_tree(_published_as_flow(reference), with_inputs=with_inputs)
        size1, size2 = tree_size(tree1), tree_size(tree2)
        if size1 == 0 and size2 == 0:
            return 1.0
        result = zss.distance(
            _to_zss(tree1), _to_zss(tree2), get_children=zss.Node.get_children,
            insert_cost=lambda n: node_cost(n.label), remove_cost=lambda n: node_cost(n.label),
            update_cost=lambda a, b: relabel_cost(a.label, b.label), return_operations=return_operations,
        )
        distance = result[0] if return_operations else result
        return 1.0 - distance / (size1 + size2)
    except Exception:  # noqa: BLE001
        return 0.0

