"""Reading a plan's YAML node by node, so that every error names the file and line it is about."""

from __future__ import annotations

from typing import Any

import yaml

from regionflow.errors import ConfigError


def node_error(path: str, node: yaml.Node | None, message: str) -> ConfigError:
    """A ConfigError "path:line: message" (no line when node is None)."""
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return ConfigError(f"{path}{line}: {message}")


def mapping(path: str, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A mapping node's entries as name -> (key node, value node); refuses non-mappings and repeated keys."""
    if not isinstance(node, yaml.MappingNode):
        raise node_error(path, node, f"{what} must be a mapping")
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            raise node_error(path, k, f"{what}: keys must be plain names")
        if k.value in out:
            raise node_error(path, k, f"{what}: {k.value!r} appears twice")
        out[k.value] = (k, v)
    return out


def scalar(path: str, node: yaml.Node, what: str) -> Any:
    """A scalar node's value as YAML types it (int, float, bool, str, None)."""
    if not isinstance(node, yaml.ScalarNode):
        raise node_error(path, node, f"{what} must be a single value")
    return yaml.safe_load(yaml.serialize(node))


def number(path: str, node: yaml.Node, what: str, minimum: float = 0) -> float:
    """A scalar that must be a number >= minimum."""
    value = scalar(path, node, what)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise node_error(path, node, f"{what} must be a number >= {minimum}")
    return float(value)
