"""The package's import graph follows its layers, as docs/architecture.md's table gives them (this
test reads them from there): every import of an iapo module goes down, never up or around, there
is no cycle, and only the command line imports inside a function (a command's module, when that
command runs)."""

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "iapo"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"



def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path  # "" is the package itself
    return found


def _imports(path: Path, known: set[str]):
    """(module imported, line, inside a function) for each import of an iapo module."""
    tree = ast.parse(path.read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}"[5:] in known else node.module
                     for a in node.names]
        for name in names:
            if name == "iapo" or name.startswith("iapo."):
                yield name[5:], node.lineno, id(node) in nested


def _layer_table() -> str:
    """The table of layers in docs/architecture.md: from its header row to the first blank line."""
    text = DOC.read_text()
    start = text.index("| layer | modules |")
    end = text.find("\n\n", start)
    return text[start:end if end >= 0 else None]


def _doc_layers() -> tuple[dict[str, int], list[str]]:
    """The layer of every module, read from docs/architecture.md's table (the one place that says
    them): a row `| N | `a`, `pkg/`, `pkg.*` | ... |` puts module a, package pkg with all its
    modules, or pkg's modules not named elsewhere, in layer N. Lower numbers are lower layers. Also
    the names the table gives that are no module."""
    modules = set(_modules()) - {""}
    rows = [(int(m.group(1)), re.findall(r"`([^`]+)`", m.group(2)))
            for m in re.finditer(r"^\| (\d+) \| (.+?) \|", _layer_table(), flags=re.M)]
    level: dict[str, int] = {}
    unknown = []
    for wildcard in (False, True):  # modules named one by one first, then `pkg.*`
        for n, tokens in rows:
            for token in tokens:
                if token.endswith(".*") != wildcard:
                    continue
                if token.endswith(".*"):
                    names = [m for m in modules if m.startswith(token[:-1]) and m not in level]
                elif token.endswith("/"):
                    names = [m for m in modules if m == token[:-1] or m.startswith(token[:-1] + ".")]
                else:
                    names = [token] if token in modules else []
                if not names:
                    unknown.append(token)
                level.update({name: n for name in names})
    return level, unknown


LEVEL, UNKNOWN = _doc_layers()


def test_every_module_has_a_layer():
    """Every module of the package is in docs/architecture.md's table of layers, and the table
    names no module the package does not have."""
    missing = sorted(set(_modules()) - set(LEVEL) - {""})
    assert not missing, f"modules without a layer in docs/architecture.md: {missing}"
    assert not UNKNOWN, f"docs/architecture.md's layers name what is no module: {UNKNOWN}"


def test_imports_go_down_the_layers():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        if not name:
            continue
        for target, line, _ in _imports(path, set(modules)):
            same_package = target.startswith(name + ".") or (
                "." in name and "." in target and target.rsplit(".", 1)[0] == name.rsplit(".", 1)[0])
            if target == "cli" or LEVEL[target] > LEVEL[name] or (LEVEL[target] == LEVEL[name] and not same_package):
                wrong.append(f"{name}:{line} imports {target}")
    assert not wrong, "imports against the layers: " + "; ".join(wrong)


def test_no_import_cycle():
    modules = _modules()
    graph = {name: {t for t, _, _ in _imports(path, set(modules))} for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack, node, nxt]))
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_only_the_command_line_imports_inside_functions():
    modules = _modules()
    inside = [f"{name}:{line} imports {target}" for name, path in modules.items() if name != "cli"
              for target, line, nested in _imports(path, set(modules)) if nested]
    assert not inside, "function-level imports of iapo modules: " + "; ".join(inside)


def test_the_command_line_is_thin():
    lines = (SRC / "cli.py").read_text().splitlines()
    assert len(lines) < 200, f"cli.py has {len(lines)} lines: a command's work belongs in its own module"
