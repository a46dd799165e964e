"""A small Prometheus-style comparison over one region's own metric samples, for plan triggers.

    expr      := [agg "("] selector [")"] op number
    agg       := sum | max | min | count
    selector  := metric_name ["{" [matcher ("," matcher)* [","]] "}"]
    matcher   := label ("=" | "!=" | "=~" | "!~") string      (regexes match the whole value, as in PromQL)
    op        := ">" | ">=" | "<" | "<=" | "==" | "!="

Examples: `regionflow_canary_total{status="failed"} > 3`, `sum(regionflow_replication_backlog) >= 100`.

As in PromQL, a comparison filters: without an aggregation the expression holds when at least one
matching sample satisfies it; an aggregation over no sample has no value, so it never holds. Sample
names are the exposition names (`_total`, `_bucket`, `_count`, `_sum` included). There are no range
vectors or functions: a trigger's `for:` supplies the time dimension.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": math.fsum, "max": max, "min": min, "count": lambda values: float(len(values)),
}
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


class MetricSample(NamedTuple):
    """One sample as a registry exposes it (prometheus_client's Sample has these fields too)."""

    name: str
    labels: Mapping[str, str]
    value: float


class ExprError(ValueError):
    """The expression does not parse; column is 1-based, in the expression text."""

    def __init__(self, message: str, column: int):
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # = != =~ !~
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.label, "")  # an absent label matches "" (as in PromQL)
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        found = re.fullmatch(self.value, have) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'


class ExprResult(NamedTuple):
    holds: bool
    value: float | None  # the aggregate, or the first matching sample that satisfies (else the first match)
    series: int  # how many samples the selector matched
    detail: str  # for people: what was seen


@dataclass(frozen=True)
class Expr:
    text: str
    metric: str
    matchers: tuple[Matcher, ...]
    aggregation: str | None
    op: str
    threshold: float

    def selected(self, samples: Iterable[MetricSample]) -> list[MetricSample]:
        """The samples the selector matches, in the order given."""
        return [s for s in samples if s.name == self.metric and all(m.matches(s.labels) for m in self.matchers)]

    def evaluate(self, samples: Iterable[MetricSample]) -> ExprResult:
        """Whether the comparison holds over samples, with what was observed."""
        compare = COMPARISONS[self.op]
        chosen = self.selected(samples)
        if not chosen:
            return ExprResult(False, None, 0, f"no sample matches {self.selector}")
        if self.aggregation is not None:
            value = AGGREGATIONS[self.aggregation]([s.value for s in chosen])
            holds = compare(value, self.threshold)
            return ExprResult(holds, value, len(chosen), f"{self.aggregation}(...) = {value:g} over {len(chosen)} "
                                                         f"series")
        hit = next((s for s in chosen if compare(s.value, self.threshold)), None)
        shown = hit or chosen[0]
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(shown.labels.items()))
        return ExprResult(hit is not None, shown.value, len(chosen),
                          f"{shown.name}{{{labels}}} = {shown.value:g} ({len(chosen)} series)")

    @property
    def selector(self) -> str:
        inner = ",".join(str(m) for m in self.matchers)
        return f"{self.metric}{{{inner}}}" if self.matchers else self.metric


class _Scanner:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def error(self, message: str) -> ExprError:
        return ExprError(message, self.pos + 1)

    def peek(self, *tokens: str) -> str | None:
        self.skip()
        # longest first, so ">=" is not read as ">"
        return next((t for t in sorted(tokens, key=len, reverse=True) if self.text.startswith(t, self.pos)), None)

    def take(self, *tokens: str, expected: str) -> str:
        found = self.peek(*tokens)
        if found is None:
            raise self.error(f"expected {expected}{self._seen()}")
        self.pos += len(found)
        return found

    def regex(self, pattern: re.Pattern[str], expected: str) -> str:
        self.skip()
        m = pattern.match(self.text, self.pos)
        if m is None:
            raise self.error(f"expected {expected}{self._seen()}")
        self.pos = m.end()
        return m.group(0)

    def string(self) -> str:
        self.skip()
        quote = self.text[self.pos] if self.pos < len(self.text) else ""
        if quote not in ('"', "'"):
            raise self.error(f"expected a quoted label value{self._seen()}")
        start, self.pos = self.pos, self.pos + 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == quote:
                self.pos += 1
                return "".join(out)
            if ch == "\\" and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                if nxt not in _ESCAPES:
                    raise self.error(f"unknown escape \\{nxt} in a label value")
                out.append(_ESCAPES[nxt])
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
        self.pos = start
        raise self.error("a label value is not closed")

    def _seen(self) -> str:
        rest = self.text[self.pos:]
        return f", found {rest[:12]!r}" if rest else ", found the end"


def parse_expr(text: str) -> Expr:
    """Parse an expression (grammar in the module docstring); ExprError with the column of the problem."""
    sc = _Scanner(text)
    sc.skip()
    if sc.pos == len(text):
        raise sc.error("the expression is empty")
    name = sc.regex(_NAME, "a metric name or an aggregation (sum, max, min, count)")
    aggregation = None
    if name in AGGREGATIONS and sc.peek("("):
        aggregation = name
        sc.take("(", expected="(")
        name = sc.regex(_NAME, "a metric name")
    matchers: list[Matcher] = []
    if sc.peek("{"):
        sc.take("{", expected="{")
        while not sc.peek("}"):
            label = sc.regex(_LABEL, "a label name or }")
            op = sc.take("=~", "!~", "!=", "=", expected="a label matcher (= != =~ !~)")
            sc.skip()
            value_column = sc.pos + 1
            value = sc.string()
            if op in ("=~", "!~"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ExprError(f"bad regular expression for {label}: {exc}", value_column) from None
            matchers.append(Matcher(label, op, value))
            if not sc.peek("}"):
                sc.take(",", expected=", or }")
        sc.take("}", expected="}")
    if aggregation is not None:
        sc.take(")", expected=f") to close {aggregation}(")
    op = sc.take(*COMPARISONS, expected="a comparison (> >= < <= == !=)")
    number = sc.regex(_NUMBER, "a number to compare with")
    sc.skip()
    if sc.pos != len(text):
        raise sc.error(f"unexpected {text[sc.pos:][:12]!r} after the expression")
    return Expr(text=text.strip(), metric=name, matchers=tuple(matchers), aggregation=aggregation, op=op,
                threshold=float(number))
