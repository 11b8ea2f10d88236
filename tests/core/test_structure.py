"""The code's shape: no import cycles inside ``fusionlab`` and no private names imported from
one of its modules into another (read from the source with ``ast``, lazy imports included);
``make test-fast`` leaves out registered markers only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import fusionlab

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

PACKAGE = Path(fusionlab.__file__).parent


def imports(source: str, module: str) -> list[tuple[str, str]]:
    """``(imported fusionlab module, imported name or "")`` for every import in ``source``, the
    module ``fusionlab.<module>``; ``import fusionlab.x`` gives ``("x", "")``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[1], "") for a in node.names
                      if a.name.startswith("fusionlab.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("fusionlab"):
                base = node.module.split(".")[1:]
            elif node.level == 1:  # from .x import a / from . import x
                base = node.module.split(".") if node.module else []
            else:
                continue
            for alias in node.names:
                if base:
                    found.append((base[0], alias.name))
                else:
                    found.append((alias.name, ""))
    return [(target, name) for target, name in found if target != module]


def package_imports(sources: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    return {module: imports(source, module) for module, source in sources.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each as the path of modules that closes it."""
    found, done = [], set()

    def visit(node, path):
        if node in path:
            found.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            visit(target, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def private_imports(table: dict[str, list[tuple[str, str]]]) -> list[str]:
    return [
        f"fusionlab.{module} imports {name} from fusionlab.{target}"
        for module, pairs in table.items()
        for target, name in pairs
        if name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
    ]


def fusionlab_sources() -> dict[str, str]:
    return {path.stem: path.read_text() for path in sorted(PACKAGE.glob("*.py"))}


def test_fusionlab_has_no_import_cycles():
    table = package_imports(fusionlab_sources())
    graph = {module: {target for target, _ in pairs} for module, pairs in table.items()}
    assert graph["multiseed"] >= {"train"}  # the reader sees what it should
    assert cycles(graph) == []


def test_fusionlab_imports_no_private_names_across_modules():
    assert private_imports(package_imports(fusionlab_sources())) == []


def test_the_checks_find_cycles_and_private_imports():
    sources = {
        "a": "from .b import helper\n",
        "b": "def f():\n    from fusionlab.a import _secret\n    import fusionlab.c\n",
        "c": "from . import utils\nfrom .utils import __version__\n",
        "utils": "",
    }
    table = package_imports(sources)
    graph = {module: {target for target, _ in pairs} for module, pairs in table.items()}
    assert graph == {"a": {"b"}, "b": {"a", "c"}, "c": {"utils"}, "utils": set()}
    assert cycles(graph) == [["a", "b", "a"]]
    assert private_imports(table) == ["fusionlab.b imports _secret from fusionlab.a"]


def test_the_fast_loop_leaves_out_registered_markers_only():
    """``make test-fast`` deselects by marker; a misspelt marker would deselect nothing."""
    root = PACKAGE.parent
    makefile = (root / "Makefile").read_text()
    expression = re.search(r"^FAST_MARKERS \?= (.+)$", makefile, re.M).group(1)
    left_out = re.findall(r"not (\w+)", expression)
    config = tomllib.loads((root / "pyproject.toml").read_text())
    registered = {m.split(":")[0] for m in config["tool"]["pytest"]["ini_options"]["markers"]}
    assert left_out and set(left_out) <= registered, (left_out, registered)
    assert 'pytest -m "$(FAST_MARKERS)"' in makefile
