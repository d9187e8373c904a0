"""The package's shape, enforced: every module sits in one layer and imports only from its own
layer or the layers below it; no import cycle; imports at the top of their files (a function-level
import must be a heavy optional dependency, deferred on purpose, with a ``# deferred`` comment).

    base < method core < worlds < drivers < apps

(``DESIGN.md``, "The package, in layers"; README's "Where things are"). A new module must be given
a layer here; an import that runs upward fails with the line to fix.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "animatelcm_helpers"
NAME = "animatelcm_helpers"

LAYERS = {
    "base": ("config", "media", "utils", "hub", "detectors", "annotators", "checkpoint_formats"),
    "method core": ("consistency", "lcm", "training", "distill", "svd_scheduler", "svd_distill", "successors"),
    "worlds": ("toy", "toy.data", "toy.configs", "toy.zoo", "toy.recipes", "toy.metrics", "toy.svd", "toy2d"),
    "drivers": ("loading", "pipelines", "control", "svd", "i2v", "i2v_official"),
    "apps": ("evaluation", "demo", "cli", "results", "toy.build", "toy.build_successors", "__main__", "__init__"),
}
ORDER = list(LAYERS)
LAYER_OF = {module: ORDER.index(layer) for layer, modules in LAYERS.items() for module in modules}


def package_modules(root: Path = PACKAGE) -> dict[str, Path]:
    """{dotted name inside the package: file}; a package's __init__ is the package itself."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1] or ["__init__"]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, node: ast.ImportFrom | ast.Import, known: set[str]) -> list[str]:
    """The package modules an import statement in ``module`` names (relative or absolute)."""
    targets = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == NAME or alias.name.startswith(NAME + "."):
                targets.append(alias.name[len(NAME) + 1:] or "__init__")
        return [t for t in targets if t in known or t == "__init__"]
    if node.level:
        package = module.split(".")[:-1] if module not in ("toy",) else ["toy"]
        if module == "__init__":
            package = []
        base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
        prefix = ".".join(base + ([node.module] if node.module else []))
    elif node.module and (node.module == NAME or node.module.startswith(NAME + ".")):
        prefix = node.module[len(NAME) + 1:]
    else:
        return []
    for alias in node.names:  # `from . import x` may name a module or an attribute of the package
        candidate = f"{prefix}.{alias.name}" if prefix else alias.name
        targets.append(candidate if candidate in known else (prefix or "__init__"))
    return [t for t in targets if t in known or t == "__init__"]


def imports(module: str, source: str, known: set[str]):
    """(target module, line, at top level?, line text) for every package import in ``source``;
    plus (None, line, False, text) for third-party imports inside functions."""
    tree = ast.parse(source)
    lines = source.splitlines()
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        text = lines[node.lineno - 1]
        targets = _resolve(module, node, known)
        if targets:
            for t in targets:
                yield t, node.lineno, id(node) in top, text
        elif id(node) not in top and not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            yield None, node.lineno, False, text


def violations(sources: dict[str, str]) -> list[str]:
    """Every broken rule in ``sources`` ({module: source}), as 'module:line: what'."""
    known = set(sources)
    out = []
    for module in sorted(sources):
        if module not in LAYER_OF:
            out.append(f"{module}: no layer: add it to LAYERS in tests/test_layers.py (see DESIGN.md)")
    graph: dict[str, set[str]] = {m: set() for m in sources}
    for module, source in sorted(sources.items()):
        for target, line, at_top, text in imports(module, source, known):
            where = f"{module}:{line}: {text.strip()}"
            if target is None:
                if "deferred" not in text:
                    out.append(f"{where}: a function-level import; move it to the top of the file, or mark a heavy "
                               "optional dependency '# deferred: why'")
                continue
            if target == module or target == "__init__":
                continue
            graph[module].add(target)
            if not at_top:
                out.append(f"{where}: a package import inside a function; imports of the package go at the top")
            if module in LAYER_OF and target in LAYER_OF and LAYER_OF[target] > LAYER_OF[module]:
                out.append(f"{where}: imports upward, from {ORDER[LAYER_OF[module]]} ({module}) to "
                           f"{ORDER[LAYER_OF[target]]} ({target})")
    out += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp) + [sorted(comp)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_in_a_layer_importing_only_downward_without_cycles():
    sources = {m: p.read_text() for m, p in package_modules().items()}
    assert not (problems := violations(sources)), "\n".join(problems)


def test_the_layers_name_only_modules_that_exist():
    assert sorted(set(LAYER_OF) - set(package_modules())) == []


@pytest.mark.parametrize("module, source, expected", [
    # the bug that started issue 23: stage 2 building the toy's motion adapter
    ("distill", "from .toy.recipes import extract_adapter\n", "imports upward, from method core (distill) to worlds"),
    ("utils", "from . import pipelines\n", "imports upward, from base (utils) to drivers"),
    ("toy.zoo", "from ..pipelines import quiet_loading\n", "imports upward, from worlds (toy.zoo) to drivers"),
    ("lcm", "def f():\n    from . import consistency\n", "a package import inside a function"),
    ("lcm", "def f():\n    import scipy\n", "a function-level import"),
    ("newmodule", "import torch\n", "no layer"),
])
def test_the_checker_goes_red_on_an_upward_import(module, source, expected):
    sources = {m: p.read_text() for m, p in package_modules().items()}
    sources[module] = source
    assert any(expected in v for v in violations(sources)), violations(sources)


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    sources = {m: p.read_text() for m, p in package_modules().items()}
    sources["toy.data"] = "from . import zoo\n"  # zoo imports configs, which imports data
    assert any(v.startswith("import cycle:") and "toy.data" in v for v in violations(sources))


def test_deferred_imports_are_few():
    """Deferred imports are for heavy dependencies only a few paths need (controlnet-aux above all)."""
    modules = {m for m, p in package_modules().items()
               for t, line, top, text in imports(m, p.read_text(), set(package_modules()))
               if t is None and "deferred" in text}
    assert modules <= {"config", "detectors", "annotators", "i2v"}, modules
