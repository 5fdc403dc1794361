"""The catalogue loads from package data and is consistent with the flow schema."""

import json
from importlib import resources

from wfutils.data.catalog import catalog_as_text, load_catalog
from wfutils.flows.vocabulary import FLOW_LOGIC_DEFINITIONS, TRIGGER_TYPES


def test_catalog_sizes_and_required_entries():
    cat = load_catalog()
    actions = [a for a in cat.actions.values() if a.category == "action"]
    assert len(actions) >= 40
    assert len(cat.tables) >= 30
    for name in ("look_up_records", "create_record", "update_record", "delete_record", "send_email", "send_notification",
                 "create_task", "ask_for_approval", "wait_for_condition", "log", "create_catalog_task", "post_slack_message"):
        assert name in cat.actions, name
    for name in ("incident", "problem", "change_request", "sc_req_item", "sys_user", "sys_user_group", "cmdb_ci"):
        assert name in cat.tables, name
    assert set(cat.triggers) == set(TRIGGER_TYPES)
    for d in ("IF", "ELSEIF", "ELSE", "FOREACH", "DOUNTIL", "PARALLEL", "WAITFORDURATION", "SETFLOWVARIABLES"):
        assert d in cat.flow_logic
    assert set(cat.flow_logic) <= set(FLOW_LOGIC_DEFINITIONS)


def test_actions_have_typed_inputs_and_tables_realistic_fields():
    cat = load_catalog()
    for a in cat.actions.values():
        assert a.inputs, a.name
        assert all(p.type for p in a.inputs + a.outputs), a.name
    inc = cat.table("incident")
    assert {"priority", "state", "assigned_to", "assignment_group", "caller_id"} <= set(inc.field_names)
    assert inc.field("assignment_group").reference == "sys_user_group"
    assert inc.field("priority").choices["1"] == "Critical"


def test_holdout_is_part_of_catalog_and_disjoint_from_in_distribution():
    cat = load_catalog()
    assert cat.holdout_tables and cat.holdout_actions
    assert cat.holdout_tables <= set(cat.tables)
    assert cat.holdout_actions <= set(cat.actions)
    assert not set(cat.in_distribution_tables()) & cat.holdout_tables
    assert not set(cat.in_distribution_actions()) & cat.holdout_actions


def test_catalog_files_are_package_resources():
    for name in ("actions.json", "tables.json", "triggers.json", "flow_logic.json", "holdout.json"):
        data = json.loads(resources.files("wfutils.data").joinpath("catalog_data", name).read_text(encoding="utf-8"))
        assert data


def test_catalog_as_text_can_hide_holdout():
    cat = load_catalog()
    full, hidden = catalog_as_text(cat), catalog_as_text(cat, include_holdout=False)
    assert "create_jira_issue" in full and "create_jira_issue" not in hidden
    assert "- sn_hr_core_case" in full and "- sn_hr_core_case" not in hidden
