"""Region-switch plans: YAML files naming, for each region that can be activated, a workflow of steps.

Errors name the file and line. A plan is validated whole (unknown step kinds, unknown regions, bad
parameters, cycles of child plans, triggers: trigger_spec.py) before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from regionflow.errors import ConfigError
from regionflow.switch.model import Group, Plan, Step
from regionflow.switch.registry import StepRegistry
from regionflow.switch.trigger_spec import parse_triggers
from regionflow.switch.yamlnodes import mapping as _mapping
from regionflow.switch.yamlnodes import node_error as _err
from regionflow.switch.yamlnodes import number as _number
from regionflow.switch.yamlnodes import scalar as _scalar

Kinds = Mapping[str, frozenset[str]]

COMMON = {"name", "kind", "timeout", "retries", "description"}
APPROACHES = {"active/passive"}


def _step(path: str, node: yaml.Node, regions: list[str], index: int, stack: tuple[str, ...],
          kinds: Kinds) -> Step | Group:
    fields = _mapping(path, node, f"step {index + 1}")
    if "parallel" in fields:
        if set(fields) - {"parallel", "name"}:
            raise _err(path, node, "a parallel group has only 'parallel' (and 'name')")
        seq = fields["parallel"][1]
        if not isinstance(seq, yaml.SequenceNode) or not seq.value:
            raise _err(path, seq, "parallel must be a non-empty list of steps")
        steps = []
        for i, child in enumerate(seq.value):
            s = _step(path, child, regions, i, stack, kinds)
            if isinstance(s, Group):
                raise _err(path, child, "parallel groups cannot nest")
            steps.append(s)
        return Group(steps=steps, line=node.start_mark.line + 1)
    if "kind" not in fields:
        raise _err(path, node, "a step needs a 'kind'")
    kind_node = fields["kind"][1]
    kind = _scalar(path, kind_node, "kind")
    if kind not in kinds:
        raise _err(path, kind_node, f"unknown step kind {kind!r} (known: {', '.join(sorted(kinds))})")
    unknown = set(fields) - COMMON - kinds[kind]
    if unknown:
        key = sorted(unknown)[0]
        raise _err(path, fields[key][0], f"step kind {kind!r} has no parameter {key!r}")
    params = {k: _scalar(path, v, k) for k, (_kn, v) in fields.items() if k in kinds[kind]}
    step = Step(kind=kind, name=str(_scalar(path, fields["name"][1], "name")) if "name" in fields else kind,
                line=node.start_mark.line + 1, params=params)
    if "timeout" in fields:
        step.timeout = _number(path, fields["timeout"][1], "timeout", 0.1)
    if "retries" in fields:
        step.retries = int(_number(path, fields["retries"][1], "retries", 0))
    for region_param in ("region",):
        if region_param in params and params[region_param] not in regions:
            raise _err(path, fields[region_param][1], f"unknown region {params[region_param]!r} "
                                                     f"(the plan's regions: {', '.join(regions)})")
    if kind == "health_check":
        if "region" not in params:
            raise _err(path, node, "health_check needs a region")
        if params.get("expect", "ok") not in ("ok", "failing"):
            raise _err(path, fields["expect"][1], "expect must be ok or failing")
    if kind == "manual_approval" and params.get("on_timeout", "abort") not in ("proceed", "abort"):
        raise _err(path, fields["on_timeout"][1], "on_timeout must be proceed or abort")
    if kind == "wait_replication" and "max_wait" in params:
        _number(path, fields["max_wait"][1], "max_wait")
    if kind == "custom" and ("function" in params) == ("command" in params):
        raise _err(path, node, "a custom step needs exactly one of function (module:function) or command")
    if kind == "custom" and "function" in params and ":" not in str(params["function"]):
        raise _err(path, fields["function"][1], "function must be written module:function")
    if kind == "child_plan":
        if "plan" not in params:
            raise _err(path, node, "child_plan needs a plan (a path, relative to this plan)")
        child_path = (Path(path).parent / str(params["plan"])).resolve()
        if str(child_path) in stack:
            chain = " -> ".join([*(Path(p).name for p in stack), child_path.name])
            raise _err(path, fields["plan"][1], f"child plans form a cycle: {chain}")
        step.child = _load(child_path, kinds, stack)
    return step


def _load(path: Path, kinds: Kinds, stack: tuple[str, ...] = ()) -> Plan:
    spath = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{spath}: cannot read plan: {exc.strerror}") from None
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{spath}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None:
        raise ConfigError(f"{spath}: the plan is empty")
    top = _mapping(spath, root, "a plan")
    for required in ("name", "regions", "workflows"):
        if required not in top:
            raise _err(spath, root, f"a plan needs '{required}'")
    unknown = set(top) - {"name", "regions", "approach", "desired_rto_seconds", "workflows", "triggers",
                          "description"}
    if unknown:
        key = sorted(unknown)[0]
        raise _err(spath, top[key][0], f"unknown plan key {key!r}")
    regions_node = top["regions"][1]
    regions = _scalar(spath, regions_node, "regions") if isinstance(regions_node, yaml.ScalarNode) else [
        _scalar(spath, n, "region") for n in getattr(regions_node, "value", [])]
    if not isinstance(regions, list) or len(regions) < 2 or not all(isinstance(r, str) for r in regions):
        raise _err(spath, regions_node, "regions must list at least two region names")
    approach = _scalar(spath, top["approach"][1], "approach") if "approach" in top else "active/passive"
    if approach not in APPROACHES:
        raise _err(spath, top["approach"][1], f"approach must be one of {sorted(APPROACHES)}")
    rto = _number(spath, top["desired_rto_seconds"][1], "desired_rto_seconds", 0.1) \
        if "desired_rto_seconds" in top else 300.0
    workflows: dict[str, list[Step | Group]] = {}
    for region, (key_node, wf_node) in _mapping(spath, top["workflows"][1], "workflows").items():
        if region not in regions:
            raise _err(spath, key_node, f"workflow for unknown region {region!r} (the plan's regions: "
                                        f"{', '.join(regions)})")
        if not isinstance(wf_node, yaml.SequenceNode) or not wf_node.value:
            raise _err(spath, wf_node, f"workflow {region!r} must be a non-empty list of steps")
        workflows[region] = [_step(spath, n, regions, i, (*stack, spath), kinds) for i, n in enumerate(wf_node.value)]
    triggers = parse_triggers(spath, top["triggers"][1], regions, list(workflows)) if "triggers" in top else []
    return Plan(name=str(_scalar(spath, top["name"][1], "name")), path=spath, regions=regions, approach=approach,
                desired_rto_seconds=rto, workflows=workflows, text=text, triggers=triggers)


def load_plan(path: str | Path, steps: StepRegistry) -> Plan:
    """Load and validate a plan file (child plans included) against the step kinds steps knows."""
    return _load(Path(path).resolve(), steps.kinds())


def plan_regions_known(plan: Plan, known: list[str]) -> None:
    """Refuse a plan that names a region the topology does not have."""
    missing = [r for r in plan.regions if r not in known]
    if missing:
        raise ConfigError(f"{plan.path}: region(s) {', '.join(missing)} are not in the topology "
                          f"(known: {', '.join(known)})")
