"""The structure of the house, read from the source with ``ast``: the CLI on top, argparse in it alone, no cycles."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "jal_plugins"


def module_name(path: Path) -> str:
    """The dotted name a source file imports as; ``adapters/X.py`` is ``jal_plugins.adapters.X``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "adapters":
        parts.insert(0, PACKAGE)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    """Every module of the package (adapters included) by dotted name."""
    files = [*(ROOT / PACKAGE).rglob("*.py"), *(ROOT / "adapters").rglob("*.py")]
    return {module_name(path): path for path in sorted(files)}


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _absolute(node: ast.ImportFrom, module: str, path: Path) -> str:
    """The absolute module of ``from ... import`` (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imported(node, module: str, path: Path, known) -> list[str]:
    """The modules an import statement names: ``from P import m`` is ``P.m`` when that is a module, else ``P``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    source = _absolute(node, module, path)
    return [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]


def _is_type_checking(node) -> bool:
    test = getattr(node, "test", None)
    return isinstance(test, (ast.Name, ast.Attribute)) and ast.unparse(test).endswith("TYPE_CHECKING")


def module_level(body):
    """Import statements run when the module is imported: not inside functions nor ``if TYPE_CHECKING``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or _is_type_checking(node):
            continue
        else:  # class bodies, if/try/with blocks at the top run at import time
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from module_level(getattr(node, field, None) or [])


def all_imports(path: Path, module: str, known) -> set[str]:
    tree = parse(path)
    nodes = (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return {name for node in nodes for name in imported(node, module, path, known)}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_only_the_entry_point_imports_the_cli():
    modules = sources()
    offenders = [rel(path) for module, path in modules.items()
                 if module != f"{PACKAGE}.__main__" and f"{PACKAGE}.cli" in all_imports(path, module, modules)]  # fmt: skip
    assert not offenders, f"the library imports the CLI (only {PACKAGE}/__main__.py may): {', '.join(offenders)}"


def test_argparse_is_imported_only_by_the_cli():
    modules = sources()
    offenders = [rel(path) for module, path in modules.items() if module != f"{PACKAGE}.cli"
                 and any(name.split(".")[0] == "argparse" for name in all_imports(path, module, modules))]  # fmt: skip
    assert not offenders, f"argparse belongs in {PACKAGE}/cli.py only; also imported by: {', '.join(offenders)}"


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level."""
    modules = sources()
    graph = {}
    for module, path in modules.items():
        names = {n for node in module_level(parse(path).body) for n in imported(node, module, path, modules)}
        graph[module] = {n for n in names if n in modules and n != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_module_level_imports_form_no_cycle():
    modules = sources()
    graph = import_graph()
    found = cycles(graph)
    described = ["; ".join(f"{rel(modules[m])} -> {', '.join(sorted(graph[m] & set(c)))}" for m in c)
                 for c in found]  # fmt: skip
    assert not found, "module-level import cycles: " + " | ".join(described)


def test_the_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
