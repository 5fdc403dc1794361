"""Retrieve few-shot examples and catalogue entries for a request (BM25), or from the reference (oracle).

The paper's prompted pipeline adds retrieved context to the prompt: the most similar
training examples (request + flow) and the catalogue entries (actions with their inputs,
tables with their fields) the flow is likely to need. :class:`Retriever` does this with BM25
(:mod:`bm25s`) over

* training *requests* (query: the new request) for examples;
* catalogue *documents* (name, label, description, synonyms, field labels) for actions and
  tables, merged with the actions and tables the retrieved examples use.

The oracle mode (:meth:`Retriever.oracle`) instead retrieves what the reference flow actually
uses: the actions and tables named in it and the training examples whose flows are most alike
(BM25 over flow signatures: trigger type, step definitions, tables). Comparing BM25 with the
oracle separates retriever errors from model errors (the paper: at most ~4% from the
retriever).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Mapping, Sequence

from wfutils.data.catalog import Action, Catalog, Table, load_catalog
from wfutils.flows.vocabulary import as_flow_dict, components, flow_text, inputs, trigger_of, trigger_type

__all__ = ["CatalogContext", "Example", "Retrieval", "Retriever", "flow_signature", "flow_tables", "tokenize"]

_STOPWORDS = frozenset(
    "a an and are as at be by for from has have if in into is it its of on or that the their then this to "
    "was were when which while will with every each all any please thanks thank you".split()
)
_TOKEN_RE = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; ``snake_case`` names split into words; English stop words dropped."""
    words = _TOKEN_RE.findall(str(text).lower().replace("_", " "))
    return [w for w in words if w not in _STOPWORDS and len(w) > 1] or ["_empty_"]


@dataclass(frozen=True)
class Example:
    """A training pair offered to the prompt."""

    id: str
    request: str
    flow: str  # compact JSON (wfutils.flows.vocabulary.flow_text)
    score: float = 0.0


@dataclass(frozen=True)
class CatalogContext:
    """Catalogue entries offered to the prompt."""

    actions: tuple[Action, ...] = ()
    tables: tuple[Table, ...] = ()

    def render(self, *, max_fields: int = 12) -> str:
        """Plain-text listing used in prompts (actions with inputs/outputs, tables with fields)."""
        lines: list[str] = []
        if self.actions:
            lines.append("Actions (definition: inputs -> outputs):")
            for a in self.actions:
                ins = ", ".join(p.name + ("" if p.required else "?") for p in a.inputs)
                outs = ", ".join(p.name for p in a.outputs)
                scope = f" [{a.category}, scope {a.scope}]" if (a.scope != "global" or a.category != "action") else ""
                lines.append(f"- {a.name}{scope}: {a.description} inputs({ins}) -> outputs({outs})")
        if self.tables:
            lines.append("Tables (name: fields):")
            for t in self.tables:
                names = ", ".join(f.name for f in t.fields[:max_fields])
                lines.append(f"- {t.name} ({t.label}): {names}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Retrieval:
    """What a strategy gets for one request."""

    examples: tuple[Example, ...] = ()
    catalog: CatalogContext = field(default_factory=CatalogContext)
    mode: str = "bm25"


def flow_tables(flow: Any, table_names: Iterable[str]) -> list[str]:
    """Tables of ``table_names`` that a flow names in any input value (in order of appearance)."""
    flow = as_flow_dict(flow)
    known = set(table_names)
    values = [i.get("value") for i in inputs(trigger_of(flow))]
    for c in components(flow):
        values += [i.get("value") for i in inputs(c)]
    out: list[str] = []
    for v in values:
        if isinstance(v, str) and v in known and v not in out:
            out.append(v)
    return out


def flow_signature(flow: Any, table_names: Iterable[str] = ()) -> list[str]:
    """Tokens describing a flow's shape: trigger type, step definitions, tables."""
    flow = as_flow_dict(flow)
    tokens = [f"trigger:{trigger_type(flow)}"]
    tokens += [f"step:{c.get('definition')}" for c in components(flow)]
    tokens += [f"table:{t}" for t in flow_tables(flow, table_names)]
    return tokens


def _action_doc(a: Action) -> str:
    return " ".join([a.name, a.label, a.description, " ".join(a.tags), " ".join(p.name for p in a.inputs)])


def _table_doc(t: Table) -> str:
    return " ".join([t.name, t.label, t.plural, " ".join(t.synonyms), t.domain,
                     " ".join(f.label for f in t.fields), " ".join(" ".join(w) for w in t.adjectives.values()),
                     " ".join(" ".join(w) for w in t.people.values())])


class _BM25:
    def __init__(self, docs: Sequence[list[str]]) -> None:
        import bm25s

        self.n = len(docs)
        self._index = bm25s.BM25()
        if self.n:
            self._index.index([list(d) for d in docs], show_progress=False)

    def top(self, query: list[str], k: int) -> list[tuple[int, float]]:
        k = min(int(k), self.n)
        if k <= 0:
            return []
        docs, scores = self._index.retrieve([query], k=k, show_progress=False, n_threads=1)
        return [(int(d), float(s)) for d, s in zip(docs[0], scores[0])]


class Retriever:
    """BM25 retrieval of training examples and catalogue entries; oracle retrieval from the reference.

    ``train`` rows need ``id``, ``request`` and ``flow`` (dict or JSON string), e.g. the
    synthetic ``train`` split of :func:`wfutils.data.store.load_dataset`.
    """

    def __init__(self, train: Iterable[Mapping[str, Any]], catalog: Catalog | None = None) -> None:
        rows = list(train.to_list() if hasattr(train, "to_list") else train)
        for i, row in enumerate(rows):
            for name in ("id", "request", "flow"):
                if name not in row or row[name] in (None, ""):
                    raise ValueError(f"training record {i}: field {name!r} is missing or empty")
        self.catalog = catalog if catalog is not None else load_catalog()
        self.examples_pool = [Example(id=str(r["id"]), request=str(r["request"]), flow=flow_text(r["flow"])) for r in rows]
        self._flows = [as_flow_dict(e.flow) for e in self.examples_pool]
        self._actions = list(self.catalog.actions.values())
        self._tables = list(self.catalog.tables.values())
        self._requests = _BM25([tokenize(e.request) for e in self.examples_pool])
        self._signatures = _BM25([flow_signature(f, self.catalog.tables) for f in self._flows])
        self._action_index = _BM25([tokenize(_action_doc(a)) for a in self._actions])
        self._table_index = _BM25([tokenize(_table_doc(t)) for t in self._tables])

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the example pool (ids, requests, flows): part of prediction resume keys."""
        digest = hashlib.sha256()
        for e in self.examples_pool:
            digest.update(json.dumps([e.id, e.request, e.flow], ensure_ascii=False).encode("utf-8"))
        return digest.hexdigest()[:16]

    # ---------------------------------------------------------------- BM25
    def similar_examples(self, request: str, k: int = 3, *, exclude_ids: Iterable[str] = ()) -> list[Example]:
        """The ``k`` training examples whose requests are most similar to ``request`` (best first)."""
        skip = set(exclude_ids)
        hits = self._requests.top(tokenize(request), k + len(skip))
        out = [Example(**{**self.examples_pool[i].__dict__, "score": round(s, 4)}) for i, s in hits
               if self.examples_pool[i].id not in skip and self.examples_pool[i].request != request]
        return out[:k]

    def catalog_entries(self, request: str, *, examples: Sequence[Example] = (), k_actions: int = 8,
                        k_tables: int = 3) -> CatalogContext:
        """Actions and tables for ``request``.

        Actions: those the retrieved examples use, then BM25 hits on the request (score > 0).
        Tables: BM25 hits on the request first (requests name their table), then the tables
        the examples use.
        """
        query = tokenize(request)
        actions: list[Action] = []
        tables: list[Table] = [self._tables[i] for i, s in self._table_index.top(query, k_tables) if s > 0]
        for ex in examples:
            flow = as_flow_dict(ex.flow)
            for c in components(flow):
                a = self.catalog.actions.get(str(c.get("definition")))
                if a is not None and a not in actions:
                    actions.append(a)
            for name in flow_tables(flow, self.catalog.tables):
                t = self.catalog.tables[name]
                if t not in tables:
                    tables.append(t)
        for i, s in self._action_index.top(query, len(self._actions)):
            if len(actions) >= k_actions or s <= 0:
                break
            if self._actions[i] not in actions:
                actions.append(self._actions[i])
        return CatalogContext(actions=tuple(actions[: max(k_actions, 0)]), tables=tuple(tables[: max(k_tables, 0)]))

    def retrieve(self, request: str, k: int = 3, *, k_actions: int = 8, k_tables: int = 3,
                 exclude_ids: Iterable[str] = ()) -> Retrieval:
        """BM25 examples and catalogue entries for a request."""
        examples = self.similar_examples(request, k, exclude_ids=exclude_ids)
        catalog = self.catalog_entries(request, examples=examples, k_actions=k_actions, k_tables=k_tables)
        return Retrieval(examples=tuple(examples), catalog=catalog, mode="bm25")

    # ---------------------------------------------------------------- oracle
    def oracle(self, reference: Any, k: int = 3, *, exclude_ids: Iterable[str] = (), request: str | None = None) -> Retrieval:
        """Perfect retrieval: the catalogue entries the reference flow uses and the training
        examples whose flows are most alike (same trigger, steps and tables)."""
        flow = as_flow_dict(reference)
        skip = set(exclude_ids)
        hits = self._signatures.top(flow_signature(flow, self.catalog.tables), k + len(skip) + 1)
        examples = [Example(**{**self.examples_pool[i].__dict__, "score": round(s, 4)}) for i, s in hits
                    if self.examples_pool[i].id not in skip and (request is None or self.examples_pool[i].request != request)][:k]
        actions = []
        for c in components(flow):
            a = self.catalog.actions.get(str(c.get("definition")))
            if a is not None and a not in actions:
                actions.append(a)
        tables = [self.catalog.tables[t] for t in flow_tables(flow, self.catalog.tables)]
        return Retrieval(examples=tuple(examples), catalog=CatalogContext(tuple(actions), tuple(tables)), mode="oracle")
