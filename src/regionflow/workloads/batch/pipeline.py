"""Pipeline spec: how a CSV input maps to fields, what a valid row is, how it is enriched and written."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from regionflow.errors import ConfigError


def normalise_header(name: str) -> str:
    """Header names match ignoring case and every kind of space."""
    return "".join(name.split()).casefold()


class CsvDialect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delimiter: str = ","
    quote: str = '"'

    @field_validator("delimiter", "quote")
    @classmethod
    def _one_char(cls, v: str) -> str:
        if len(v) != 1 or v in "\r\n":
            raise ValueError("must be exactly one character other than a line break")
        return v


class Enrichment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str
    key: str
    reference_key: str
    fields: list[str] = Field(min_length=1)


class NotifySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recipients: list[str] = Field(default_factory=lambda: ["batch-owners@example.com"])
    sender: str = "regionflow@example.com"
    link_expiry_seconds: int = Field(default=3600, gt=0)


class Pipeline(BaseModel):
    """A declarative batch pipeline (TOML or YAML)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    # None: chunks are cut by bytes, sized from the input and the worker count (split.auto_chunk_bytes).
    chunk_rows: int | None = Field(default=None, gt=0)
    csv: CsvDialect = Field(default_factory=CsvDialect)
    fields: dict[str, str] = Field(min_length=1)  # field name -> input header
    schema_: dict[str, Any] = Field(alias="schema")
    enrichment: Enrichment | None = None
    output: dict[str, str] = Field(min_length=1)  # output header -> source field
    notify: NotifySpec = Field(default_factory=NotifySpec)

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema.Draft7Validator.check_schema(v)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema (draft 7): {exc.message}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Pipeline:
        headers = [normalise_header(h) for h in self.fields.values()]
        if len(set(headers)) != len(headers):
            raise ValueError("fields: two fields map to the same input header")
        known = set(self.fields)
        if self.enrichment is not None:
            if self.enrichment.key not in self.fields:
                raise ValueError(f"enrichment.key: {self.enrichment.key!r} is not a field")
            clash = known & set(self.enrichment.fields)
            if clash:
                raise ValueError(f"enrichment.fields: {sorted(clash)} clash with input fields")
            known |= set(self.enrichment.fields)
        for header, source in self.output.items():
            if source not in known:
                raise ValueError(f"output.{header}: source {source!r} is neither a field nor an enriched field")
        return self

    @property
    def json_schema(self) -> dict[str, Any]:
        """The pipeline's JSON Schema for one row."""
        return self.schema_

    @property
    def output_header(self) -> list[str]:
        return list(self.output)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


def _format_validation_error(source: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{source}: {where}: {first['msg']}{more}"


def pipeline_from_dict(data: dict[str, Any], source: str = "pipeline") -> Pipeline:
    """Build a Pipeline, turning validation errors into one ConfigError that names the key."""
    try:
        return Pipeline.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from None


def load_pipeline(path: str | Path) -> Pipeline:
    """Load a pipeline from a .toml, .yaml or .yml file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read pipeline: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) if p.suffix.lower() in (".yaml", ".yml") else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: not valid {p.suffix.lstrip('.').upper() or 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a pipeline must be a table/mapping at the top level")
    return pipeline_from_dict(data, str(p))


def default_pipeline_text() -> str:
    return resources.files("regionflow.workloads.batch").joinpath("default_pipeline.toml").read_text("utf-8")


def default_pipeline() -> Pipeline:
    """The built-in pipeline that reproduces the reference system."""
    return pipeline_from_dict(tomllib.loads(default_pipeline_text()), "default pipeline")
