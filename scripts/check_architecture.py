#!/usr/bin/env python3
"""Architecture checks run by `make test`: no import cycle between regionflow's modules (imports inside
functions and under TYPE_CHECKING count too), no module over MAX_LINES lines, and the layering rules
below. Exits 1 with one line per problem."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "regionflow"
MAX_LINES = 500
# (importer prefix, forbidden prefixes): the switch knows no region internals and no workload.
FORBIDDEN = [
    ("regionflow.switch", ("regionflow.region", "regionflow.workloads", "regionflow.cli")),
    ("regionflow.workloads", ("regionflow.region", "regionflow.cli")),
    ("regionflow.api", ("regionflow.region", "regionflow.cli")),
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The regionflow modules that path names in any import statement."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return {m for m in found if m in modules and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def problems_in(root: Path, package: str = PACKAGE) -> tuple[list[str], int]:
    """Every problem found in root/package, and how many modules were read."""
    files = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    modules = set(files)
    graph = {name: imports_of(path, name, modules) for name, path in files.items()}
    problems: list[str] = []
    for component in cycles(graph):
        problems.append("import cycle: " + " <-> ".join(component))
    for path in files.values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            problems.append(f"{path.relative_to(root.parent)}: {lines} lines (at most {MAX_LINES})")
    for importer, forbidden in FORBIDDEN:
        for name, deps in graph.items():
            if name == importer or name.startswith(importer + "."):
                for dep in sorted(deps):
                    if dep.startswith(forbidden):
                        problems.append(f"{name} imports {dep}: {importer} must not depend on {dep.rsplit('.', 1)[0]}")
    return problems, len(files)


def main() -> int:
    problems, count = problems_in(ROOT)
    for line in problems:
        print(line)
    if not problems:
        print(f"architecture ok: {count} modules, no import cycle, none over {MAX_LINES} lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
