"""Row validation: the JSON Schema compiled into columnar checks, with jsonschema wording the reasons.

Checking a million rows one dict at a time with jsonschema is far too slow, so the schema keywords we
understand exactly are turned into polars expressions. They only pick candidate rows: every candidate
is then validated by jsonschema itself, whose verdict and message are final. A schema using anything
we don't compile is validated row by row with jsonschema, which is slow but never wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jsonschema
import polars as pl
from jsonschema.exceptions import best_match

_TOP_LEVEL_OK = {"$schema", "$id", "$comment", "title", "description", "type", "required", "properties",
                 "additionalProperties"}
_PROPERTY_OK = {"type", "maxLength", "minLength", "pattern", "enum", "const", "title", "description",
                "$comment", "default", "examples"}


@dataclass
class _FieldRule:
    field: str
    max_length: int | None = None
    min_length: int | None = None
    pattern: str | None = None
    allowed: list[str] | None = None  # from enum or const


class RowValidator:
    """Validates rows given as columns of text, one column per pipeline field."""

    def __init__(self, schema: dict[str, Any], fields: list[str]):
        self.fields = fields
        self._validator = jsonschema.Draft7Validator(schema)
        self.rules = _compile(schema, fields)  # None: fall back to jsonschema for every row

    @property
    def compiled(self) -> bool:
        return self.rules is not None

    def reason(self, row: dict[str, str]) -> str | None:
        """jsonschema's verdict on one row: None when valid, else a one-line reason naming the field."""
        error = best_match(self._validator.iter_errors(row))
        if error is None:
            return None
        if error.absolute_path:
            field = ".".join(str(p) for p in error.absolute_path)
            return f"schema: {field}: {error.message}"
        return f"schema: {error.message}"

    def candidates(self, df: pl.DataFrame) -> pl.Series:
        """A boolean Series: True for rows that may be invalid (and must be checked by reason())."""
        if self.rules is None:
            return pl.Series("bad", [True] * df.height, dtype=pl.Boolean)
        if not self.rules or df.height == 0:
            return pl.Series("bad", [False] * df.height, dtype=pl.Boolean)
        exprs = []
        for rule in self.rules:
            col = pl.col(rule.field)
            if rule.max_length is not None:
                exprs.append(col.str.len_chars() > rule.max_length)
            if rule.min_length is not None:
                exprs.append(col.str.len_chars() < rule.min_length)
            if rule.allowed is not None:
                exprs.append(~col.is_in(rule.allowed))
        bad = df.select(pl.any_horizontal(exprs).alias("bad")).to_series() if exprs else None
        patterns = [r for r in self.rules if r.pattern is not None]
        if patterns:
            # JSON Schema patterns are searched with Python's re, exactly as jsonschema does.
            flags = [False] * df.height
            for rule in patterns:
                rx = re.compile(rule.pattern or "")  # (rules without a pattern were filtered out above)
                for i, value in enumerate(df.get_column(rule.field).to_list()):
                    if not flags[i] and rx.search(value) is None:
                        flags[i] = True
            pat = pl.Series("bad", flags, dtype=pl.Boolean)
            bad = pat if bad is None else (bad | pat)
        if bad is None:
            return pl.Series("bad", [False] * df.height, dtype=pl.Boolean)
        return bad


def _compile(schema: dict[str, Any], fields: list[str]) -> list[_FieldRule] | None:
    if set(schema) - _TOP_LEVEL_OK:
        return None
    if schema.get("type", "object") != "object":
        return None
    required = schema.get("required", [])
    if any(name not in fields for name in required):
        return None  # every row fails; let jsonschema say why
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        return None
    additional = schema.get("additionalProperties", True)
    if additional is False and any(f not in props for f in fields):
        return None
    if additional not in (True, False):
        return None
    rules: list[_FieldRule] = []
    for name, spec in props.items():
        if name not in fields:
            continue  # a property we never produce constrains nothing
        if not isinstance(spec, dict) or set(spec) - _PROPERTY_OK:
            return None
        if spec.get("type", "string") not in ("string", ["string"]):
            return None
        rule = _FieldRule(field=name, max_length=spec.get("maxLength"), min_length=spec.get("minLength"),
                          pattern=spec.get("pattern"))
        for key in ("enum", "const"):
            if key in spec:
                values = spec[key] if key == "enum" else [spec[key]]
                if not all(isinstance(v, str) for v in values):
                    return None
                rule.allowed = values if rule.allowed is None else [v for v in rule.allowed if v in values]
        rules.append(rule)
    return rules
