"""Seeded generator of ServiceNow-style (request, flow, feature tags) examples.

Each example is built by composing a trigger and one to three *step blocks* drawn from the
catalogue (:mod:`wfutils.data.catalog`); every block adds components to the flow and a clause to
the request at the same time, so request and flow always agree. Blocks come in two kinds
that the paper's error analysis separates:

* explicit: the request names every step ("look up the group members and, for each one,
  send an email");
* implicit: the request implies a step or a condition it never names ("email every member of
  the assignment group" implies a look-up and a FOR EACH loop, tag ``implicit_step``;
  "escalate critical ones" implies an IF on the priority, tag ``implicit_condition``).

Structural tags (flow logic, nesting, trigger kind, encoded queries, data pills, long flows,
spokes, subflows) are computed from the finished flow by :func:`wfutils.flows.vocabulary.flow_features`, which the
real-corpus converters reuse.

Only the ``rng`` passed in drives randomness, so a seed gives the same examples on every
machine. ``mode="in"`` draws only from the in-distribution tables and actions; ``mode="ood"``
prefers the hold-out ones (``wfutils/data/catalog_data/holdout.json``) and :func:`generate_example`
retries until the flow uses at least one of them.

:func:`build_synthetic` assembles the corpus: splits ``train``, ``validation`` (model and
checkpoint selection), ``test`` (in distribution) and ``ood`` (hold-out tables and actions),
with no request repeated across or within splits.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from datasets import DatasetDict

from wfutils.data.catalog import Catalog, Table, load_catalog
from wfutils.data.converters.building import Components
from wfutils.data.records import rows_to_dataset
from wfutils.flows.schema import validate_flow
from wfutils.flows.vocabulary import flow_features, flow_text

# ----------------------------------------------------------------------------- building


class FlowBuilder:
    """Accumulates a trigger and ordered components; checks inputs against the catalogue."""

    def __init__(self, catalog: Catalog, trigger_type: str, trigger_inputs: list[tuple[str, Any]]):
        self.catalog = catalog
        spec = catalog.triggers[trigger_type]
        names = {p.name for p in spec.inputs}
        for name, _ in trigger_inputs:
            if name not in names:
                raise ValueError(f"trigger {trigger_type} has no input {name!r}")
        self.trigger: dict[str, Any] = {"type": trigger_type}
        if trigger_inputs:
            self.trigger["inputs"] = [{"name": n, "value": v} for n, v in trigger_inputs]
        self._components = Components(shorten=False)

    @property
    def components(self) -> list[dict[str, Any]]:
        return self._components.items

    @property
    def next_order(self) -> int:
        return self._components.next_order

    def add(self, definition: str, inputs: list[tuple[str, Any]] = (), block: int | None = None) -> int:
        """Append a component (a flow logic or a catalogue action, with the category and scope the catalogue
        gives it) and return its order."""
        if definition in self.catalog.flow_logic:
            allowed = {p.name for p in self.catalog.flow_logic[definition].inputs}
            category, scope = "flowlogic", None
        else:
            action = self.catalog.action(definition)
            allowed = set(action.input_names)
            category, scope = action.category, action.scope
        for name, _ in inputs:
            if name not in allowed:
                raise ValueError(f"{definition} has no input {name!r} (has {sorted(allowed)})")
        return self._components.add(definition, list(inputs), block, category=category, scope=scope)

    def flow(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "components": self.components}


@dataclass
class Subject:
    """The record a block talks about: its table, the data pill that holds it, how text names it."""

    table: Table
    pill: str
    ref: str


@dataclass
class Ctx:
    """Per-example state shared by the blocks."""

    rng: random.Random
    catalog: Catalog
    mode: str
    builder: FlowBuilder | None = None
    tags: set[str] = field(default_factory=set)

    # -- choices honouring the in-distribution / ood split
    def table_ok(self, name: str) -> bool:
        return self.mode == "ood" or name not in self.catalog.holdout_tables

    def action_ok(self, name: str) -> bool:
        return self.mode == "ood" or name not in self.catalog.holdout_actions

    def pick_table(self, pred: Callable[[Table], bool]) -> Table:
        pool = [t for t in self.catalog.tables.values() if pred(t) and self.table_ok(t.name)]
        if self.mode == "ood":
            held = [t for t in pool if t.name in self.catalog.holdout_tables]
            if held and self.rng.random() < 0.7:
                pool = held
        return self.rng.choice(pool)

    def pick_action(self, names: list[str], ood_bias: float = 0.6) -> str:
        pool = [n for n in names if self.action_ok(n)]
        if self.mode == "ood":
            held = [n for n in pool if n in self.catalog.holdout_actions]
            if held and self.rng.random() < ood_bias:
                pool = held
        return self.rng.choice(pool)

    def choice(self, seq: Any) -> Any:
        return self.rng.choice(seq)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


# ----------------------------------------------------------------------------- text helpers


def noun(t: Table) -> str:
    return t.label if t.label[:2].isupper() else t.label.lower()


def plural(t: Table) -> str:
    return t.plural if t.plural[:2].isupper() else t.plural.lower()


def article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeio" and not word.startswith("one") else "a ") + word


def is_task_table(t: Table) -> bool:
    names = set(t.field_names)
    return {"assigned_to", "assignment_group", "number", "short_description"} <= names


def display(t: Table) -> str:
    return "number" if "number" in t.field_names else t.display_field


@dataclass
class Cond:
    query: str
    adjective: str | None  # word that implies the query (implicit), or None
    phrase: str  # explicit post-nominal phrase ("whose priority is Critical")


def field_condition(ctx: Ctx, t: Table, *, allow_two: bool = True) -> Cond:
    """An explicit condition on a choice / boolean field of ``t``."""
    fields = [f for f in t.fields if f.choices or f.type == "boolean"]
    if not fields:
        f = ctx.choice([f for f in t.fields if f.type in ("string", "reference")])
        return Cond(f"{f.name}ISNOTEMPTY", None, f"that has a {f.label.lower()}")
    f1 = ctx.choice(fields)
    query, phrase = _field_part(ctx, f1)
    if allow_two and ctx.chance(0.35):
        others = [f for f in fields if f.name != f1.name]
        if others:
            f2 = ctx.choice(others)
            q2, p2 = _field_part(ctx, f2)
            if ctx.chance(0.3):
                query, phrase = f"{query}^OR{q2}", f"{phrase} or {p2}"
            else:
                query, phrase = f"{query}^{q2}", f"{phrase} and {p2}"
    return Cond(query, None, phrase)


def _field_part(ctx: Ctx, f: Any) -> tuple[str, str]:
    label = f.label.lower() if not f.label[:2].isupper() else f.label
    if f.type == "boolean":
        value = ctx.choice(["true", "false"])
        word = {"true": ctx.choice(["true", "checked", "set"]), "false": ctx.choice(["false", "not set", "unchecked"])}[value]
        return f"{f.name}={value}", f"whose {label} flag is {word}"
    value, shown = ctx.choice(sorted(f.choices.items()))
    if ctx.chance(0.2):
        return f"{f.name}!={value}", ctx.choice([f"whose {label} is not {shown}", f"with a {label} other than {shown}"])
    return f"{f.name}={value}", ctx.choice([f"whose {label} is {shown}", f"with {label} {shown}", f"where {label} = {shown}"])


def adjective_condition(ctx: Ctx, t: Table) -> Cond | None:
    if not t.adjectives:
        return None
    query, words = ctx.choice(sorted(t.adjectives.items()))
    return Cond(query, ctx.choice(words), "")


def people_fields(t: Table, *, groups: bool | None = None) -> list[str]:
    out = []
    for name in sorted(t.people):
        ref = t.field(name).reference
        is_group = ref == "sys_user_group"
        if groups is None or groups == is_group:
            out.append(name)
    return out


TOPICS = [
    ("needs attention", "needs your attention"), ("update", "has been updated"), ("assigned", "was assigned to you"),
    ("reminder", "is still open"), ("closed", "has been closed"), ("escalation", "has been escalated"),
]


# ----------------------------------------------------------------------------- blocks
# A block takes the context and a Subject (or None) and returns an imperative clause.


@dataclass(frozen=True)
class Addressee:
    """Whom a notifying block writes to: a people field of the subject, and what it tells them."""

    person_field: str  # the user (or group) reference field, e.g. assigned_to
    who: str  # how the request names that person or group, e.g. "assignee"
    owner: str  # how the request names the subject as their owner ("its", "the incident's")
    topic: str
    said: str


def addressee(ctx: Ctx, s: Subject, *, groups: bool) -> Addressee | None:
    """A person (``groups=False``) or group field of the subject and a topic, chosen at random; None if it has none."""
    fields = people_fields(s.table, groups=groups)
    if not fields:
        return None
    f = ctx.choice(fields)
    who = ctx.choice(s.table.people[f])
    topic, said = ctx.choice(TOPICS)
    return Addressee(f, who, "its" if s.ref == "it" else f"the {noun(s.table)}'s", topic, said)


def notify_person(ctx: Ctx, s: Subject, block: int | None = None) -> str:
    """Email / notify / message a person named by a user-reference field of the subject."""
    b = ctx.builder
    to = addressee(ctx, s, groups=False)
    if to is None:
        return log_step(ctx, s, block)
    f, who, owner, topic, said = to.person_field, to.who, to.owner, to.topic, to.said
    shown = display(s.table)
    channel = ctx.pick_action(["send_email", "send_email", "send_notification", "send_slack_direct_message", "send_sms"], 0.5)
    if channel == "send_email":
        subject = f"{s.table.label} {{{{{s.pill}.{shown}}}}} {said}"
        inputs = [("to", f"{{{{{s.pill}.{f}.email}}}}"), ("subject", subject)]
        text = ctx.choice([f"email {owner} {who} that it {said}", f"send an email to {owner} {who} saying it {said}",
                           f"send {owner} {who} an email letting them know it {said}"])
        if ctx.chance(0.3):
            inputs.append(("body", f"{{{{{s.pill}.short_description}}}}" if "short_description" in s.table.field_names
                           else f"{{{{{s.pill}.{shown}}}}}"))
            text += ctx.choice([" and include the description", " with the short description in the body"])
        b.add("send_email", inputs, block)
        return text
    if channel == "send_notification":
        name = f"{s.table.name}.{topic.replace(' ', '_')}"
        b.add("send_notification", [("notification", name), ("record", f"{{{{{s.pill}}}}}")], block)
        return ctx.choice([f"send the {name} notification about it", f"trigger the {name} notification for {owner} {who}"])
    if channel == "send_sms":
        b.add("send_sms", [("to_number", f"{{{{{s.pill}.{f}.mobile_phone}}}}"),
                           ("message", f"{s.table.label} {{{{{s.pill}.{shown}}}}} {said}")], block)
        return ctx.choice([f"text {owner} {who} that it {said}", f"send an SMS to {owner} {who} saying it {said}"])
    b.add("send_slack_direct_message", [("user_email", f"{{{{{s.pill}.{f}.email}}}}"),
                                        ("message", f"{s.table.label} {{{{{s.pill}.{shown}}}}} {said}")], block)
    return ctx.choice([f"DM {owner} {who} on Slack that it {said}", f"send {owner} {who} a Slack message saying it {said}"])


def notify_group_members(ctx: Ctx, s: Subject, block: int | None = None) -> str:
    """Implicit step: 'email everyone in the group' implies a look-up and a FOR EACH loop."""
    b = ctx.builder
    to = addressee(ctx, s, groups=True)
    if to is None:
        return notify_person(ctx, s, block)
    g, who, owner, said = to.person_field, to.who, to.owner, to.said
    lookup = b.add("look_up_records", [("table", "sys_user_grmember"), ("conditions", f"group={{{{{s.pill}.{g}}}}}")], block)
    explicit = ctx.chance(0.3)
    if not explicit:
        ctx.tags.add("implicit_step")
    loop = b.add("FOREACH", [("items", f"{{{{{lookup}.records}}}}")], block)
    b.add("send_email", [("to", f"{{{{{loop}.item.user.email}}}}"),
                         ("subject", f"{s.table.label} {{{{{s.pill}.{display(s.table)}}}}} {said}")], loop)
    if explicit:
        return ctx.choice([f"look up the members of {owner} {who} and, for each member, send an email saying it {said}",
                           f"find all group members of {owner} {who}, then loop over them and email each one that it {said}"])
    return ctx.choice([f"email every member of {owner} {who} that it {said}",
                       f"let everyone in {owner} {who} know by email that it {said}",
                       f"send each person in {owner} {who} an email saying it {said}"])


def update_subject(ctx: Ctx, s: Subject, block: int | None = None) -> str:
    """Set one or two fields of the subject record."""
    choices = [f for f in s.table.fields if f.choices]
    parts, words = [], []
    for f in ctx.rng.sample(choices, k=min(len(choices), ctx.choice([1, 1, 2]))):
        value, shown = ctx.choice(sorted(f.choices.items()))
        parts.append(f"{f.name}={value}")
        words.append(f"the {f.label.lower()} to {shown}")
    if "work_notes" in s.table.field_names and ctx.chance(0.3):
        parts.append("work_notes=Updated by flow")
        words.append("a work note saying 'Updated by flow'")
    if not parts:
        return log_step(ctx, s, block)
    ctx.builder.add("update_record", [("record", f"{{{{{s.pill}}}}}"), ("table", s.table.name), ("values", "^".join(parts))], block)
    target = "it" if s.ref == "it" else f"the {noun(s.table)}"
    return ctx.choice([f"set {' and '.join(words)} on {target}", f"update {target}, setting {' and '.join(words)}",
                       f"change {target}: {', '.join(words)}"])


def reassign_to_ci_group(ctx: Ctx, s: Subject, block: int | None = None) -> str:
    """Implicit step: 'route it to the CI's support group' implies looking up the CI."""
    if "cmdb_ci" not in s.table.field_names or "assignment_group" not in s.table.field_names:
        return update_subject(ctx, s, block)
    b = ctx.builder
    explicit = ctx.chance(0.3)
    lookup = b.add("look_up_record", [("table", "cmdb_ci"), ("conditions", f"sys_id={{{{{s.pill}.cmdb_ci}}}}")], block)
    b.add("update_record", [("record", f"{{{{{s.pill}}}}}"), ("table", s.table.name),
                            ("values", f"assignment_group={{{{{lookup}.record.support_group}}}}")], block)
    target = "it" if s.ref == "it" else f"the {noun(s.table)}"
    if explicit:
        return f"look up the configuration item of {target} and set the assignment group to the CI's support group"
    ctx.tags.add("implicit_step")
    return ctx.choice([f"route {target} to the support group of its configuration item",
                       f"assign {target} to whichever team supports the affected CI"])


def close_children(ctx: Ctx, s: Subject, block: int | None = None) -> str:
    """Implicit step: 'close its open tasks' implies a look-up of child records and a loop."""
    children = {"incident": ("incident_task", "incident"), "problem": ("problem_task", "problem"),
                "change_request": ("change_task", "change_request"), "sc_req_item": ("sc_task", "request_item")}
    if s.table.name not in children:
        return update_subject(ctx, s, block)
    child_name, ref_field = children[s.table.name]
    child = ctx.catalog.table(child_name)
    b = ctx.builder
    if ctx.chance(0.35):
        b.add("update_multiple_records", [("table", child_name), ("conditions", f"{ref_field}={{{{{s.pill}.sys_id}}}}^active=true"),
                                          ("values", "state=3")], block)
        return ctx.choice([f"close all open {plural(child)} of it in one go", f"bulk-close its active {plural(child)}"])
    lookup = b.add("look_up_records", [("table", child_name), ("conditions", f"{ref_field}={{{{{s.pill}.sys_id}}}}^active=true")], block)
    loop = b.add("FOREACH", [("items", f"{{{{{lookup}.records}}}}")], block)
    b.add("update_record", [("record", f"{{{{{loop}.item}}}}"), ("table", child_name), ("values", "state=3")], loop)
    if ctx.chance(0.3):
        return f"look up its active {plural(child)} and for each one set the state to closed"
    ctx.tags.add("implicit_step")
    return ctx.choice([f"close any {plural(child)} that are still open", f"make sure all of its {plural(child)} get closed too"])


def create_related(ctx: Ctx, s: Subject, block: int | None = None) -> str:
    """Create a follow-up record (task, problem, ticket in an external tool) from the subject."""
    b = ctx.builder
    desc = f"{{{{{s.pill}.short_description}}}}" if "short_description" in s.table.field_names else f"{{{{{s.pill}.{display(s.table)}}}}}"
    kind = ctx.pick_action(["create_task", "create_record", "create_jira_issue", "create_github_issue",
                            "create_pagerduty_incident", "create_task"], 0.5)
    if kind == "create_task":
        t = ctx.pick_table(lambda t: is_task_table(t) and t.name != s.table.name and t.name not in ("task",))
        vals = f"short_description={desc}^parent={{{{{s.pill}.sys_id}}}}"
        if "assignment_group" in s.table.field_names and ctx.chance(0.5):
            vals += f"^assignment_group={{{{{s.pill}.assignment_group}}}}"
            extra = " for the same group"
        else:
            extra = ""
        b.add("create_task", [("task_table", t.name), ("values", vals)], block)
        return ctx.choice([f"create {article(noun(t))}{extra} with the same short description",
                           f"open a follow-up {noun(t)}{extra} copying the short description"])
    if kind == "create_record":
        t = ctx.pick_table(lambda t: t.name in ("problem", "incident", "change_request", "sn_customerservice_case",
                                                "sn_si_incident", "wm_order", "sn_hr_core_case") and t.name != s.table.name)
        b.add("create_record", [("table", t.name), ("values", f"short_description={desc}^priority=2")], block)
        return ctx.choice([f"raise a high-priority {noun(t)} from it", f"create {article(noun(t))} with priority High and the same description"])
    if kind == "create_jira_issue":
        b.add("create_jira_issue", [("project", ctx.choice(["OPS", "ITSM", "PLAT"])), ("issue_type", "Bug"), ("summary", desc)], block)
        proj = b.components[-1]["inputs"][0]["value"]
        return ctx.choice([f"open a Jira bug in the {proj} project with its short description", f"log a bug in Jira project {proj}"])
    if kind == "create_github_issue":
        repo = ctx.choice(["acme/portal", "acme/api", "acme/mobile-app"])
        b.add("create_github_issue", [("repository", repo), ("title", desc)], block)
        return ctx.choice([f"open a GitHub issue in {repo}", f"file an issue on GitHub ({repo}) titled with its description"])
    service = ctx.choice(["Service Desk", "Core Network", "Payments"])
    b.add("create_pagerduty_incident", [("service", service), ("title", desc), ("urgency", "high")], block)
    return ctx.choice([f"page the {service} service in PagerDuty with high urgency", f"trigger a high-urgency PagerDuty incident on {service}"])


def post_channel(ctx: Ctx, s: Subject, block: int | None = None) -> str:
    """Post to a Slack (or, held out, Teams) channel."""
    name = ctx.pick_action(["post_slack_message", "post_teams_message"], 0.6)
    channel = ctx.choice(["#it-ops", "#major-incidents", "#service-desk", "#change-board", "#security"])
    msg = f"{s.table.label} {{{{{s.pill}.{display(s.table)}}}}}: {{{{{s.pill}.short_description}}}}" \
        if "short_description" in s.table.field_names else f"{s.table.label} {{{{{s.pill}.{display(s.table)}}}}} needs attention"
    if name == "post_slack_message":
        ctx.builder.add(name, [("channel", channel), ("message", msg)], block)
        return ctx.choice([f"post it to the {channel} Slack channel", f"announce it in Slack on {channel}", f"send a Slack message to {channel}"])
    team = ctx.choice(["IT Operations", "Service Desk"])
    ctx.builder.add(name, [("team", team), ("channel", channel.lstrip("#")), ("message", msg)], block)
    return ctx.choice([f"post it in the {channel.lstrip('#')} channel of the {team} team on Microsoft Teams",
                       f"share it on Teams ({team} / {channel.lstrip('#')})"])


def log_step(ctx: Ctx, s: Subject | None, block: int | None = None) -> str:
    what = f"{{{{{s.pill}.{display(s.table)}}}}}" if s else "{{trigger.run_start_time}}"
    ctx.builder.add("log", [("message", f"Processed {what}")], block)
    return ctx.choice(["log that it was processed", "write a log entry", "record a log message"])


def work_note(ctx: Ctx, s: Subject, block: int | None = None) -> str:
    if "work_notes" not in s.table.field_names:
        return log_step(ctx, s, block)
    note = ctx.choice(["Automatically triaged", "Customer notified", "Escalated by flow"])
    action = "add_work_note" if ctx.chance(0.7) else "add_comment"
    ctx.builder.add(action, [("record", f"{{{{{s.pill}}}}}"), ("work_notes" if action == "add_work_note" else "comments", note)], block)
    kind = "work note" if action == "add_work_note" else "comment"
    return ctx.choice([f"add a {kind} '{note}'", f"leave a {kind} saying '{note}'"])


def page_on_call(ctx: Ctx, s: Subject, block: int | None = None) -> str:
    """Implicit step: 'page whoever is on call' implies the Get Current On-Call action."""
    if "assignment_group" not in s.table.field_names:
        return notify_person(ctx, s, block)
    b = ctx.builder
    if ctx.chance(0.3):
        b.add("notify_on_call_group", [("group", f"{{{{{s.pill}.assignment_group}}}}"), ("message", f"{{{{{s.pill}.short_description}}}}")], block)
        return ctx.choice(["run the Notify On-Call Group subflow for its assignment group", "call the notify-on-call-group subflow for the group"])
    oncall = b.add("get_on_call_user", [("group", f"{{{{{s.pill}.assignment_group}}}}")], block)
    via = ctx.pick_action(["send_email", "send_sms"], 0.6)
    if via == "send_sms":
        b.add("send_sms", [("to_number", f"{{{{{oncall}.user.mobile_phone}}}}"), ("message", f"{{{{{s.pill}.short_description}}}}")], block)
        how = "by SMS"
    else:
        b.add("send_email", [("to", f"{{{{{oncall}.user.email}}}}"), ("subject", f"{{{{{s.pill}.short_description}}}}")], block)
        how = "by email"
    if ctx.chance(0.3):
        return f"get the current on-call person of the assignment group and alert them {how}"
    ctx.tags.add("implicit_step")
    return ctx.choice([f"alert whoever is on call for the assignment group {how}", f"wake up the on-call engineer {how}"])


ACTION_BLOCKS = [notify_person, notify_person, notify_group_members, update_subject, update_subject, create_related,
                 post_channel, work_note, close_children, reassign_to_ci_group, page_on_call, log_step]
SIMPLE_BLOCKS = [notify_person, update_subject, post_channel, work_note, create_related, log_step]


def condition_block(ctx: Ctx, s: Subject, block: int | None = None, *, depth: int = 0) -> str:
    """IF (optionally ELSEIF / ELSE) on a field of the subject; implicit when phrased by an adjective."""
    b = ctx.builder
    t = s.table
    adj = adjective_condition(ctx, t) if ctx.chance(0.6) else None
    if adj is not None and "javascript" not in adj.query:
        cond = _pill_query(adj.query, s.pill)
        iff = b.add("IF", [("condition", cond)], block)
        inner = ctx.choice(SIMPLE_BLOCKS)(ctx, Subject(t, s.pill, "it"), iff)
        ctx.tags.add("implicit_condition")
        text = ctx.choice([f"for {adj.adjective} ones, {inner}", f"{inner} but only when it is {adj.adjective}",
                           f"{inner} in case it is {adj.adjective}"])
    else:
        c = field_condition(ctx, t, allow_two=False)
        iff = b.add("IF", [("condition", _pill_query(c.query, s.pill))], block)
        inner = ctx.choice(SIMPLE_BLOCKS)(ctx, Subject(t, s.pill, "it"), iff)
        cond_text = c.phrase.replace("whose ", "its ").replace("with ", "it has ").replace("where ", "")
        text = ctx.choice([f"if {cond_text}, {inner}", f"check whether {cond_text} and if so {inner}"])
    if ctx.chance(0.4):
        other = b.add("ELSE", [], block)
        inner2 = ctx.choice(SIMPLE_BLOCKS)(ctx, Subject(t, s.pill, "it"), other)
        text += ctx.choice([f"; otherwise {inner2}", f", else {inner2}"])
    return text


def _pill_query(query: str, pill: str) -> str:
    """Prefix each field of an encoded query with the subject's data pill."""
    parts = re.split(r"(\^OR|\^NQ|\^)", query)
    return "".join(p if p in ("^", "^OR", "^NQ") else _pill_part(p, pill) for p in parts)


def _pill_part(part: str, pill: str) -> str:
    m = re.match(r"([a-z_0-9]+)(.*)", part)
    if not m:
        return part
    return f"{{{{{pill}.{m.group(1)}}}}}{m.group(2)}"


def lookup_loop(ctx: Ctx, t: Table, cond: Cond, block: int | None = None, *, implicit: bool, nested_if: bool) -> tuple[str, str]:
    """Look up records of ``t`` matching ``cond`` and loop over them; returns (lookup text, loop text)."""
    b = ctx.builder
    lookup = b.add("look_up_records", [("table", t.name), ("conditions", cond.query)], block)
    loop = b.add("FOREACH", [("items", f"{{{{{lookup}.records}}}}")], block)
    item = Subject(t, f"{loop}.item", "it")
    if nested_if:
        inner = condition_block(ctx, item, loop, depth=1)
    else:
        inner = ctx.choice(SIMPLE_BLOCKS)(ctx, item, loop)
        if ctx.chance(0.3):
            inner += " and " + ctx.choice(SIMPLE_BLOCKS)(ctx, item, loop)
    what = f"{cond.adjective} {plural(t)}" if cond.adjective else f"{plural(t)} {cond.phrase}"
    if implicit:
        ctx.tags.add("implicit_step")
        return what, inner
    return what, inner


# ----------------------------------------------------------------------------- triggers


def record_trigger(ctx: Ctx) -> tuple[str, Subject]:
    t = ctx.pick_table(lambda t: bool(t.people) and t.name not in ("sys_user_grmember", "sys_attachment", "task_sla"))
    n = noun(t)
    kind = ctx.choice(["record_create", "record_create", "record_update", "record_update", "record_create_or_update"])
    cond: Cond | None = None
    r = ctx.rng.random()
    if r < 0.45:
        cond = adjective_condition(ctx, t)
    elif r < 0.8:
        cond = field_condition(ctx, t)
    if kind == "record_update":
        state = next((f for f in t.fields if f.name in ("state", "approval", "workflow_state", "install_status", "stage")), None)
        if state is not None and ctx.chance(0.7):
            value, shown = ctx.choice(sorted(state.choices.items()))
            q = f"{state.name}CHANGESTO{value}"
            verb = ctx.choice([f"moves to {shown}", f"changes to {shown}", f"is set to {shown}"])
        elif "assigned_to" in t.field_names:
            q, verb = "assigned_toVALCHANGES", ctx.choice(["is reassigned", "gets a new assignee"])
        else:
            q, verb = "sys_updated_onVALCHANGES", "is updated"
        if cond is not None and cond.adjective:
            ctx.tags.add("implicit_condition")
            query = f"{cond.query}^{q}"
            text = ctx.choice([f"When {article(cond.adjective + ' ' + n)} {verb}", f"Whenever {article(cond.adjective + ' ' + n)} {verb}"])
        else:
            query = q
            text = ctx.choice([f"When {article(n)} {verb}", f"Whenever {article(n)} {verb}", f"As soon as {article(n)} {verb}"])
        inputs = [("table", t.name), ("condition", query)]
        if ctx.chance(0.3):
            inputs.append(("run_trigger", "once"))
        ctx.builder = FlowBuilder(ctx.catalog, kind, inputs)
        return text, Subject(t, "trigger.current", "it")
    created = "created or updated" if kind == "record_create_or_update" else ctx.choice(["created", "created", "opened", "logged"])
    if cond is None:
        query = ""
        text = ctx.choice([f"When {article(n)} is {created}", f"Whenever a new {n} is {created}" if kind == "record_create" else f"Whenever {article(n)} is {created}"])
    elif cond.adjective:
        ctx.tags.add("implicit_condition")
        query = cond.query
        text = ctx.choice([f"When {article(cond.adjective + ' ' + n)} is {created}", f"Whenever {article(cond.adjective + ' ' + n)} is {created}"])
    else:
        query = cond.query
        text = ctx.choice([f"When {article(n)} {cond.phrase} is {created}", f"Whenever {article(n)} is {created} {cond.phrase}"])
    inputs = [("table", t.name)] + ([("condition", query)] if query else [])
    ctx.builder = FlowBuilder(ctx.catalog, kind, inputs)
    return text, Subject(t, "trigger.current", "it")


def scheduled_trigger(ctx: Ctx) -> str:
    kind = ctx.choice(["daily", "daily", "weekly", "monthly", "repeat", "run_once"])
    hour = ctx.choice(["06:00", "07:30", "08:00", "09:00", "17:00", "22:00"])
    if kind == "daily":
        inputs, text = [("time", hour)], ctx.choice([f"Every day at {hour}", f"Each morning at {hour}" if hour < "12" else f"Every evening at {hour}", f"Daily at {hour}"])
    elif kind == "weekly":
        day = ctx.choice(["monday", "tuesday", "wednesday", "thursday", "friday"])
        inputs, text = [("day_of_week", day), ("time", hour)], ctx.choice([f"Every {day.title()} at {hour}", f"Each week on {day.title()} at {hour}"])
    elif kind == "monthly":
        dom = ctx.choice([1, 1, 15, 28])
        suffix = {1: "1st", 15: "15th", 28: "28th"}[dom]
        inputs, text = [("day_of_month", dom), ("time", hour)], ctx.choice([f"On the {suffix} of every month at {hour}", f"Monthly on the {suffix} at {hour}"])
    elif kind == "repeat":
        hours = ctx.choice([1, 2, 4, 6, 12])
        inputs = [("repeat", f"{hours:02d}:00:00")]
        text = ctx.choice([f"Every {hours} hours" if hours > 1 else "Every hour", f"Every {hours}h" if hours > 1 else "Hourly"])
    else:
        date = ctx.choice(["2025-07-01", "2025-09-15", "2025-12-31"])
        inputs, text = [("run_at", f"{date} {hour}:00")], ctx.choice([f"Once, on {date} at {hour}", f"On {date} at {hour} (one time only)"])
    ctx.builder = FlowBuilder(ctx.catalog, kind, inputs)
    return text


STALE = {"due_date<javascript:gs.beginningOfToday()": ["overdue", "past-due"],
         "sys_updated_on<javascript:gs.daysAgoStart(7)": ["stale", "untouched for a week"]}


# ----------------------------------------------------------------------------- scenarios


def scenario_record(ctx: Ctx) -> tuple[str, list[str]]:
    """Record trigger + one to three blocks (action, condition, implicit steps)."""
    trig, s = record_trigger(ctx)
    n_blocks = ctx.choice([1, 1, 2, 2, 2, 3])
    clauses = []
    for i in range(n_blocks):
        r = ctx.rng.random()
        if r < 0.22 and not any(c.startswith("if ") for c in clauses):
            clauses.append(condition_block(ctx, s))
        elif r < 0.3 and i == 0 and ctx.chance(0.5):
            dur = ctx.choice([("00:30:00", "30 minutes"), ("01:00:00", "an hour"), ("24:00:00", "a day"), ("72:00:00", "3 days")])
            ctx.builder.add("WAITFORDURATION", [("duration", dur[0])])
            clauses.append(ctx.choice([f"wait {dur[1]}", f"pause for {dur[1]}"]) + " and then " + ctx.choice(SIMPLE_BLOCKS)(ctx, s))
        else:
            clauses.append(ctx.choice(ACTION_BLOCKS)(ctx, s))
        s = Subject(s.table, s.pill, "it")
    return trig, clauses


def scenario_scheduled(ctx: Ctx) -> tuple[str, list[str]]:
    """Scheduled trigger + look-up (explicit or implied) + loop, optionally with a nested IF."""
    trig = scheduled_trigger(ctx)
    t = ctx.pick_table(lambda t: is_task_table(t) or t.name in ("kb_knowledge", "ast_contract", "pm_project", "cmdb_ci", "sys_user"))
    if ctx.chance(0.35) and "due_date" in t.field_names:
        q, words = ctx.choice(sorted(STALE.items()))
        cond = Cond(f"active=true^{q}", ctx.choice(words), "")
    else:
        cond = adjective_condition(ctx, t) if ctx.chance(0.5) else None
        if cond is None or "javascript" in cond.query and ctx.chance(0.5):
            cond = field_condition(ctx, t)
    if ctx.chance(0.15) and any(f.choices for f in t.fields):
        f = next(f for f in t.fields if f.choices)
        value, shown = ctx.choice(sorted(f.choices.items()))
        ctx.builder.add("update_multiple_records", [("table", t.name), ("conditions", cond.query), ("values", f"{f.name}={value}")])
        what = f"{cond.adjective} {plural(t)}" if cond.adjective else f"{plural(t)} {cond.phrase}"
        return trig, [ctx.choice([f"set the {f.label.lower()} of all {what} to {shown}", f"bulk-update every {what.rstrip('s')} to {f.label.lower()} {shown}"])]
    implicit = ctx.chance(0.55)
    nested = ctx.chance(0.3)
    what, inner = lookup_loop(ctx, t, cond, implicit=implicit, nested_if=nested)
    if implicit:
        one = f"{cond.adjective} {noun(t)}" if cond.adjective else f"{noun(t)} {cond.phrase}"
        return trig, [ctx.choice([f"for every {one}, {inner}", f"for each {one}, {inner}", f"take every {one} and {inner}"])]
    return trig, [ctx.choice([f"look up the {what}", f"query the {t.name} table for {what}", f"find all {what}"]),
                  ctx.choice([f"for each one, {inner}", f"loop over the results and {inner}", f"for every record found, {inner}"])]


CATALOG_ITEMS = ["New Laptop", "Software Access", "VPN Access", "Mobile Phone", "Conference Room Booking", "Shared Mailbox"]


def scenario_catalog(ctx: Ctx) -> tuple[str, list[str]]:
    """Service-catalog fulfilment: approval, then IF approved fulfil (ELSE tell the requester)."""
    item = ctx.choice(CATALOG_ITEMS)
    ctx.builder = b = FlowBuilder(ctx.catalog, "service_catalog", [("catalog_item", item)])
    ritm = ctx.catalog.table("sc_req_item")
    trig = ctx.choice([f"When someone orders {article(item)}", f"When a {item} request is submitted from the catalog",
                       f"For every {item} catalog request"])
    clauses = []
    if ctx.chance(0.3):
        b.add("get_catalog_variables", [("requested_item", "{{trigger.request_item}}"), ("catalog_item", item), ("variables", "justification^cost_center")])
        clauses.append("read the justification and cost center variables")
    approver = ctx.choice([("manager", "approved by the requester's manager"), ("group", "approved by the IT approvers group")])
    rules = "ApprovesAnyU[{{trigger.requested_for.manager}}]" if approver[0] == "manager" else "ApprovesAnyG[IT Approvers]"
    ap = b.add("ask_for_approval", [("record", "{{trigger.request_item}}"), ("table", "sc_req_item"), ("approval_rules", rules)])
    explicit = ctx.chance(0.4)
    iff = b.add("IF", [("condition", f"{{{{{ap}.approval_state}}}}=approved")])
    if item == "New Laptop" and ctx.chance(0.6):
        b.add("provision_laptop", [("user", "{{trigger.requested_for}}"), ("model", "{{trigger.request_item.variables.model}}")], iff)
        ful = "run the laptop provisioning subflow for the requester"
    elif item in ("VPN Access", "Software Access", "Shared Mailbox") and ctx.chance(0.6):
        grp = {"VPN Access": "VPN-Users", "Software Access": "App-Users", "Shared Mailbox": "Mailbox-Delegates"}[item]
        b.add("add_user_to_ad_group", [("user_name", "{{trigger.requested_for.user_name}}"), ("group_name", grp)], iff)
        ful = f"add the requester to the {grp} group in Active Directory"
    else:
        grp = ctx.choice(["Service Desk", "Hardware Fulfillment", "Facilities"])
        b.add("create_catalog_task", [("requested_item", "{{trigger.request_item}}"), ("short_description", f"Fulfil {item}"),
                                      ("assignment_group", grp)], iff)
        ful = f"create a catalog task 'Fulfil {item}' for {grp}"
    if ctx.chance(0.6):
        els = b.add("ELSE", [])
        b.add("send_email", [("to", "{{trigger.requested_for.email}}"), ("subject", f"Your {item} request was rejected")], els)
        rej = ", otherwise email the requester that it was rejected"
    else:
        rej = ""
    if explicit:
        clauses.append(f"ask for it to be {approver[1]}; if the approval state is approved, {ful}{rej}")
    else:
        ctx.tags.add("implicit_condition")
        clauses.append(f"get it {approver[1]}, and once approved {ful}{rej}")
    return trig, clauses


MONITORS = [("Datadog", "/api/x_acme/alerts/datadog"), ("Nagios", "/api/x_acme/alerts/nagios"), ("our monitoring tool", "/api/x_acme/alerts")]


def scenario_application(ctx: Ctx) -> tuple[str, list[str]]:
    """Email, REST, metric and SLA triggers: create / escalate records from external events."""
    kind = ctx.choice(["email", "rest_async", "metric", "sla_task", "email", "rest_async"])
    inc = ctx.pick_table(lambda t: t.name in ("incident", "sn_customerservice_case", "sn_si_incident", "sn_hr_core_case", "wm_order"))
    if kind == "email":
        word = ctx.choice(["outage", "password", "invoice", "urgent", "phishing"])
        ctx.builder = b = FlowBuilder(ctx.catalog, "email", [("email_conditions", f"subjectLIKE{word}"), ("target_table", inc.name)])
        trig = ctx.choice([f"When an email with '{word}' in the subject arrives", f"Whenever we receive an email whose subject mentions {word}"])
        if word == "password" and ctx.chance(0.7):
            b.add("reset_ad_password", [("user_name", "{{trigger.user.user_name}}"), ("force_change", True)])
            b.add("send_email", [("to", "{{trigger.from_address}}"), ("subject", "Your password was reset"), ("body", "{{1.temporary_password}}")])
            if ctx.chance(0.5):
                ctx.tags.add("implicit_step")
                return trig, ["reset the sender's password and send them the temporary one"]
            return trig, ["reset the sender's Active Directory password (forcing a change)", "email the temporary password back to the sender"]
        rec = b.add("create_record", [("table", inc.name), ("values", "short_description={{trigger.subject}}^description={{trigger.body_text}}^caller_id={{trigger.user}}")])
        clauses = [ctx.choice([f"create {article(noun(inc))} from it using the subject and body", f"open {article(noun(inc))} with the email subject as short description"])]
        s = Subject(inc, f"{rec}.record", "it")
    elif kind == "rest_async":
        tool, path = ctx.choice(MONITORS)
        ctx.builder = b = FlowBuilder(ctx.catalog, "rest_async", [("http_method", "POST"), ("path", path)])
        trig = ctx.choice([f"When {tool} posts an alert to {path}", f"Whenever an alert comes in from {tool} over REST"])
        rec = b.add("create_or_update_record" if ctx.chance(0.3) else "create_record",
                    [("table", inc.name), ("values", "short_description={{trigger.request_body.title}}^cmdb_ci={{trigger.request_body.host}}")])
        clauses = [ctx.choice([f"create {article(noun(inc))} from the alert title and host", f"log {article(noun(inc))} for the alerting host"])]
        s = Subject(inc, f"{rec}.record", "it")
    elif kind == "metric":
        metric, thr = ctx.choice([("cpu_utilization", 90), ("disk_usage", 85), ("memory_usage", 95)])
        ctx.builder = b = FlowBuilder(ctx.catalog, "metric", [("metric", metric), ("condition", f"value>{thr}")])
        trig = ctx.choice([f"When {metric.replace('_', ' ')} on a server goes above {thr}%", f"If a CI reports {metric.replace('_', ' ')} over {thr}%"])
        rec = b.add("create_record", [("table", "incident"), ("values", f"cmdb_ci={{{{trigger.ci}}}}^short_description=High {metric.replace('_', ' ')}^priority=2")])
        clauses = ["raise a priority 2 incident on that CI"]
        s = Subject(ctx.catalog.table("incident"), f"{rec}.record", "it")
    else:
        sla = ctx.choice(["P1 resolution (4 hours)", "P2 response (8 hours)", "Case resolution (2 days)"])
        ctx.builder = b = FlowBuilder(ctx.catalog, "sla_task", [("sla_definition", sla)])
        trig = ctx.choice([f"For the '{sla}' SLA", f"When the {sla} SLA starts"])
        task = ctx.catalog.table("task")
        b.add("WAITFORDURATION", [("duration", ctx.choice(["02:00:00", "03:00:00"]))])
        wait = b.components[-1]["inputs"][0]["value"][:2].lstrip("0")
        iff = b.add("IF", [("condition", "{{trigger.task_sla_record.has_breached}}=false^{{trigger.task.active}}=true")])
        if ctx.chance(0.5):
            b.add("escalate_record", [("record", "{{trigger.task}}"), ("escalation_group", "Major Incident Management")], iff)
            act = "run the Escalate Record subflow with the Major Incident Management group"
        else:
            b.add("send_email", [("to", "{{trigger.task.assigned_to.email}}"), ("subject", "SLA at risk: {{trigger.task.number}}")], iff)
            act = "warn the assignee by email"
        if ctx.chance(0.5):
            ctx.tags.add("implicit_condition")
            return trig, [f"give it {wait} hours and {act} if the task is still open and the SLA has not breached yet"]
        return trig, [f"wait {wait} hours", f"if the SLA has not breached and the task is still active, {act}"]
    if ctx.chance(0.7):
        clauses.append(ctx.choice([notify_person, post_channel, page_on_call, reassign_to_ci_group, condition_block])(ctx, s))
    return trig, clauses


def scenario_people(ctx: Ctx) -> tuple[str, list[str]]:
    """Onboarding / offboarding on sys_user (or, held out, HR cases)."""
    if ctx.mode == "ood" and ctx.chance(0.6):
        hr = ctx.catalog.table("sn_hr_core_case")
        on = ctx.chance(0.5)
        service = "onboarding" if on else "offboarding"
        ctx.builder = b = FlowBuilder(ctx.catalog, "record_create", [("table", hr.name), ("condition", f"hr_service={service}")])
        trig = f"When an {service} HR case is opened"
        pill = "trigger.current.subject_person"
    else:
        on = ctx.chance(0.5)
        cond = "active=true" if on else "active=false"
        ctx.builder = b = FlowBuilder(ctx.catalog, "record_create" if on else "record_update",
                                      [("table", "sys_user"), ("condition", cond if on else "activeCHANGESTOfalse")])
        trig = "When a new user record is created" if on else "When a user is deactivated"
        pill = "trigger.current"
    clauses = []
    if on:
        b.add("create_ad_user", [("user_name", f"{{{{{pill}.user_name}}}}"), ("first_name", f"{{{{{pill}.first_name}}}}"),
                                 ("last_name", f"{{{{{pill}.last_name}}}}"), ("email", f"{{{{{pill}.email}}}}")])
        clauses.append(ctx.choice(["create their Active Directory account", "set up an AD account for them"]))
        if ctx.chance(0.6):
            b.add("provision_laptop", [("user", f"{{{{{pill}}}}}"), ("model", "Standard")])
            clauses.append("provision a standard laptop")
        if ctx.chance(0.5):
            meet = ctx.pick_action(["send_email", "create_zoom_meeting"], 0.7)
            if meet == "create_zoom_meeting":
                b.add("create_zoom_meeting", [("topic", f"Welcome {{{{{pill}.first_name}}}}"), ("start_time", "{{trigger.current.sys_created_on}}"), ("duration", 30)])
                clauses.append("schedule a 30-minute Zoom welcome meeting")
            else:
                b.add("send_email", [("to", f"{{{{{pill}.manager.email}}}}"), ("subject", f"{{{{{pill}.first_name}}}} starts soon")])
                clauses.append("email their manager that they start soon")
    else:
        if ctx.chance(0.5):
            b.add("offboard_user", [("user", f"{{{{{pill}}}}}")])
            clauses.append(ctx.choice(["run the offboarding subflow for them", "call the Offboard User subflow"]))
        else:
            b.add("disable_ad_user", [("user_name", f"{{{{{pill}.user_name}}}}")])
            lookup = b.add("look_up_records", [("table", "alm_hardware" if ctx.mode == "ood" else "cmdb_ci"),
                                               ("conditions", f"{'assigned_to' if ctx.mode == 'ood' else 'owned_by'}={{{{{pill}.sys_id}}}}")])
            loop = b.add("FOREACH", [("items", f"{{{{{lookup}.records}}}}")])
            b.add("update_record", [("record", f"{{{{{loop}.item}}}}"), ("table", "alm_hardware" if ctx.mode == "ood" else "cmdb_ci"),
                                    ("values", "install_status=6" if ctx.mode == "ood" else "owned_by=")], loop)
            clauses.append("disable their AD account")
            if ctx.chance(0.5):
                ctx.tags.add("implicit_step")
                clauses.append("reclaim every " + ("hardware asset assigned to them" if ctx.mode == "ood" else "configuration item they own"))
            else:
                clauses.append("look up the " + ("hardware assets assigned to them and, for each, put it back in stock" if ctx.mode == "ood"
                                                 else "configuration items they own and clear the owner on each one"))
    return trig, clauses


def scenario_dountil(ctx: Ctx) -> tuple[str, list[str]]:
    """Polling loop: DO UNTIL a CI is operational again, waiting between checks (nested logic)."""
    trig, s = record_trigger(ctx)
    b = ctx.builder
    if "cmdb_ci" not in s.table.field_names:
        return trig, [ctx.choice(ACTION_BLOCKS)(ctx, s)]
    loop = b.add("DOUNTIL", [("condition", "{{%d.record.operational_status}}=1" % (b.next_order + 2)), ("max_iterations", 12)])
    b.add("WAITFORDURATION", [("duration", "00:30:00")], loop)
    b.add("look_up_record", [("table", "cmdb_ci"), ("conditions", f"sys_id={{{{{s.pill}.cmdb_ci}}}}")], loop)
    clauses = [ctx.choice(["every 30 minutes check the configuration item until it is operational again (at most 12 times)",
                           "poll its CI every half hour until the operational status is back to Operational, up to 12 tries"])]
    clauses.append(ctx.choice([update_subject, notify_person, work_note])(ctx, s))
    return trig, clauses


def scenario_parallel(ctx: Ctx) -> tuple[str, list[str]]:
    """PARALLEL block with two or three independent notifications."""
    trig, s = record_trigger(ctx)
    b = ctx.builder
    par = b.add("PARALLEL", [])
    blocks = ctx.rng.sample([notify_person, post_channel, work_note, create_related], k=ctx.choice([2, 2, 3]))
    parts = [blk(ctx, s, par) for blk in blocks]
    return trig, ["at the same time, " + ", ".join(parts[:-1]) + " and " + parts[-1]]


def scenario_flow_variables(ctx: Ctx) -> tuple[str, list[str]]:
    """SETFLOWVARIABLES then use the variable in a later step."""
    trig, s = record_trigger(ctx)
    b = ctx.builder
    val = ctx.choice(["High", "Escalated", "Needs review"])
    b.add("SETFLOWVARIABLES", [("variables", f"status_label={val}")])
    first = f"set a flow variable status_label to '{val}'"
    if "work_notes" in s.table.field_names:
        b.add("update_record", [("record", f"{{{{{s.pill}}}}}"), ("table", s.table.name), ("values", "work_notes={{flow_variables.status_label}}")])
        return trig, [first, "write it into the work notes"]
    b.add("log", [("message", "{{flow_variables.status_label}}")])
    return trig, [first, "log it"]


SCENARIOS: list[tuple[Callable[[Ctx], tuple[str, list[str]]], float]] = [
    (scenario_record, 0.42), (scenario_scheduled, 0.2), (scenario_catalog, 0.1), (scenario_application, 0.14),
    (scenario_people, 0.05), (scenario_dountil, 0.03), (scenario_parallel, 0.03), (scenario_flow_variables, 0.03),
]

# ----------------------------------------------------------------------------- request text

PREFIXES = ["", "", "", "", "Please: ", "Can you build a flow? ", "I need a flow. ", "Build a workflow: ", "Automate this: ",
            "Create a flow that works like this: ", "We want the following. ", "Hi! "]
SUFFIXES = ["", "", "", "", " Thanks!", " Thank you.", " Thanks in advance."]
CONNECTORS = [", then ", " and then ", ". After that, ", ", and ", "; next, ", ". Then "]


def render_request(ctx: Ctx, trig: str, clauses: list[str]) -> str:
    """Combine trigger clause and step clauses with varied order, connectors, politeness and rare typos."""
    body = clauses[0]
    for c in clauses[1:]:
        conn = ctx.choice(CONNECTORS)
        body += conn + c
    if ctx.chance(0.3) and not trig.startswith(("For ", "If ", "Once")) and len(clauses) == 1:
        text = f"{body[:1].upper()}{body[1:]} {trig[:1].lower()}{trig[1:]}."
    else:
        text = f"{trig}, {body}."
    text = ctx.choice(PREFIXES) + text + ctx.choice(SUFFIXES)
    if ctx.chance(0.06):
        text = _typo(ctx, text)
    return text.replace("..", ".").replace(" ,", ",")


def _typo(ctx: Ctx, text: str) -> str:
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 5]
    if not candidates:
        return text
    i = ctx.choice(candidates)
    w = words[i]
    j = ctx.rng.randrange(1, len(w) - 2)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:] if ctx.chance(0.6) else w[:j] + w[j + 1:]
    return " ".join(words)


# ----------------------------------------------------------------------------- entry point


@dataclass
class Example:
    request: str
    flow: dict[str, Any]
    features: list[str]


def uses_holdout(flow: dict[str, Any], catalog: Catalog) -> bool:
    """True when a flow names a hold-out table (any input) or a hold-out action."""
    values = [i.get("value") for i in (flow["trigger"].get("inputs") or [])]
    for c in flow["components"]:
        if c["definition"] in catalog.holdout_actions:
            return True
        values.extend(i.get("value") for i in c.get("inputs") or [])
    return any(isinstance(v, str) and v in catalog.holdout_tables for v in values)


def generate_example(rng: random.Random, mode: str = "in", catalog: Catalog | None = None, max_tries: int = 50) -> Example:
    """One example; ``mode`` is ``in`` (no hold-out tables/actions) or ``ood`` (at least one)."""
    if mode not in ("in", "ood"):
        raise ValueError(f"mode must be 'in' or 'ood', got {mode!r}")
    cat = catalog or load_catalog()
    funcs = [f for f, _ in SCENARIOS]
    weights = [w for _, w in SCENARIOS]
    for _ in range(max_tries):
        ctx = Ctx(rng=rng, catalog=cat, mode=mode)
        scenario = rng.choices(funcs, weights=weights)[0]
        trig, clauses = scenario(ctx)
        flow = ctx.builder.flow()
        if uses_holdout(flow, cat) != (mode == "ood"):
            continue
        request = render_request(ctx, trig, clauses)
        features = sorted(flow_features(flow) | ctx.tags)
        return Example(request=request, flow=flow, features=features)
    raise RuntimeError(f"could not generate a {mode} example in {max_tries} tries")


# ----------------------------------------------------------------------------- the corpus

SYNTHETIC_DOMAIN = "servicenow"
#: Split sizes of the full corpus; ``validation`` picks checkpoints and systems, ``test`` reports them.
DEFAULT_SIZES = {"train": 2000, "validation": 100, "test": 300, "ood": 200}
#: Generation order. Each split has its own random stream and validation comes last, so adding it
#: left train, test and ood exactly as they were.
_SPLIT_MODES = (("train", "in"), ("test", "in"), ("ood", "ood"), ("validation", "in"))


def build_synthetic(seed: int = 0, n_train: int = DEFAULT_SIZES["train"], n_test: int = DEFAULT_SIZES["test"],
                    n_ood: int = DEFAULT_SIZES["ood"], n_validation: int = DEFAULT_SIZES["validation"], *,
                    validate: bool = True) -> DatasetDict:
    """Generate the synthetic corpus deterministically from ``seed``.

    No request occurs twice across (or within) the splits. With ``validate`` every flow is
    checked with :func:`wfutils.flows.schema.validate_flow` (a failure is a generator bug and raises).
    """
    sizes = {"train": n_train, "test": n_test, "ood": n_ood, "validation": n_validation}
    for split, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n_{split} must be a non-negative integer, got {n!r}")
    catalog = load_catalog()
    seen: set[str] = set()
    splits = {}
    for split, mode in _SPLIT_MODES:
        n = sizes[split]
        rng = random.Random(f"wfbook-synthetic:{seed}:{split}")
        rows = []
        attempts = 0
        while len(rows) < n:
            attempts += 1
            if attempts > 20 * n + 100:
                raise RuntimeError(f"split {split}: too many duplicate requests ({len(rows)} of {n} after {attempts} tries)")
            ex = generate_example(rng, mode, catalog)
            if ex.request in seen:
                continue
            if validate:
                errors = validate_flow(ex.flow)
                if errors:
                    raise AssertionError(f"generator produced an invalid flow for {ex.request!r}: {errors}")
            seen.add(ex.request)
            rows.append({"id": f"sn-{split}-{len(rows):05d}", "request": ex.request, "flow": flow_text(ex.flow),
                         "features": ex.features, "domain": SYNTHETIC_DOMAIN})
        splits[split] = rows_to_dataset(rows)
    return DatasetDict({split: splits[split] for split in ("train", "validation", "test", "ood")})
