"""The `triggers:` list of a plan, parsed and validated like the rest of it (errors name file and line).

    triggers:
      - name: primary-down              # letters, digits, . _ - (recorded as started_by: trigger:<name>)
        description: primary region down for 10 s
        region_unhealthy: us-east-1     # exactly one condition: region_unhealthy, canary_failing,
        for: 10s                        #   replication_lag_above (with optional from:), or expr
        activate: us-west-2             # the region whose workflow runs (and which evaluates the trigger)
"""

from __future__ import annotations

import re

import yaml

from regionflow.switch.expr import ExprError, parse_expr
from regionflow.switch.model import CONDITION_KINDS, Condition, Trigger
from regionflow.switch.yamlnodes import mapping, node_error, scalar

KEYS = frozenset({"name", "description", "activate", "for", "from", *CONDITION_KINDS})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float | None:
    """Seconds from a number (seconds) or a duration such as "10s", "2m", "1m30s", "500ms"; None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    parts = list(_DURATION.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        return None
    return sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2)] for p in parts)


def _duration(path: str, node: yaml.Node, what: str) -> float:
    seconds = parse_duration(scalar(path, node, what))
    if seconds is None:
        raise node_error(path, node, f"{what} must be a duration: seconds, or e.g. 10s, 2m, 1m30s, 500ms")
    return seconds


def _region(path: str, node: yaml.Node, what: str, regions: list[str]) -> str:
    value = scalar(path, node, what)
    if value not in regions:
        raise node_error(path, node, f"{what}: unknown region {value!r} (the plan's regions: {', '.join(regions)})")
    return str(value)


def _trigger(path: str, node: yaml.Node, index: int, regions: list[str], workflows: list[str]) -> Trigger:
    fields = mapping(path, node, f"trigger {index + 1}")
    unknown = sorted(set(fields) - KEYS)
    if unknown:
        raise node_error(path, fields[unknown[0]][0], f"a trigger has no key {unknown[0]!r} "
                                                      f"(keys: {', '.join(sorted(KEYS))})")
    for required in ("name", "activate", "for"):
        if required not in fields:
            raise node_error(path, node, f"trigger {index + 1} needs {required!r}")
    name = scalar(path, fields["name"][1], "name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise node_error(path, fields["name"][1], "a trigger's name is letters, digits, '.', '_' and '-' "
                                                  "(e.g. primary-down)")
    activate = _region(path, fields["activate"][1], "activate", regions)
    if activate not in workflows:
        raise node_error(path, fields["activate"][1], f"trigger {name!r} activates {activate}, but the plan has "
                                                      f"no workflow for {activate}")
    kinds = [k for k in CONDITION_KINDS if k in fields]
    if len(kinds) != 1:
        raise node_error(path, node, f"trigger {name!r} needs exactly one condition "
                                     f"({', '.join(CONDITION_KINDS)}), found {len(kinds)}")
    kind = kinds[0]
    value_node = fields[kind][1]
    if "from" in fields and kind != "replication_lag_above":
        raise node_error(path, fields["from"][0], "'from' belongs to replication_lag_above")
    condition: Condition
    if kind in ("region_unhealthy", "canary_failing"):
        watched = _region(path, value_node, kind, regions)
        if kind == "region_unhealthy" and watched == activate:
            raise node_error(path, value_node, f"trigger {name!r} would activate {activate} because {activate} "
                                               "itself is unhealthy")
        condition = Condition(kind, region=watched)
    elif kind == "replication_lag_above":
        source = _region(path, fields["from"][1], "from", regions) if "from" in fields else None
        if source == activate:
            raise node_error(path, fields["from"][1], f"{activate} does not replicate from itself")
        condition = Condition(kind, region=source, threshold=_duration(path, value_node, kind))
    else:
        text = scalar(path, value_node, "expr")
        if not isinstance(text, str):
            raise node_error(path, value_node, "expr must be a string, e.g. 'regionflow_epoch > 3'")
        try:
            condition = Condition(kind, expr=parse_expr(text))
        except ExprError as exc:
            raise node_error(path, value_node, f"expr: {exc} (column {exc.column} of {text!r})") from None
    description = scalar(path, fields["description"][1], "description") if "description" in fields else ""
    return Trigger(name=name, activate=activate, condition=condition,
                   for_seconds=_duration(path, fields["for"][1], "for"), line=node.start_mark.line + 1,
                   description=str(description or ""))


def parse_triggers(path: str, node: yaml.Node, regions: list[str], workflows: list[str]) -> list[Trigger]:
    """The plan's triggers; `regions` are the plan's regions and `workflows` those it can activate."""
    if not isinstance(node, yaml.SequenceNode):
        raise node_error(path, node, "triggers must be a list")
    triggers: list[Trigger] = []
    for i, child in enumerate(node.value):
        trigger = _trigger(path, child, i, regions, workflows)
        if any(t.name == trigger.name for t in triggers):
            raise node_error(path, child, f"two triggers are called {trigger.name!r}")
        triggers.append(trigger)
    return triggers
