"""Static scan of a submission for tampering, done outside the kernel.

Grades are decided outside the kernel (``autograder.verdicts``); tampering inside it can at
worst spoil the submission's own evidence. This scan reads the
student's code without running it and reports what an instructor should look at: patching of
torch, fusionlab or the grader, import-system and builtins tricks, ending the kernel. The
findings are flags in the summary and in results.json; they do not change the score.

Only cells that differ from every cell of the released notebook are scanned, so the course's
own setup code is never reported.
"""

from __future__ import annotations

import ast

# Import roots whose objects a submission has no reason to modify.
PROTECTED_MODULES = ("torch", "fusionlab", "autograder", "numpy", "builtins", "math", "nbgrader",
                     "sys", "os", "importlib", "tqdm")

SUSPICIOUS_ATTRIBUTES = {
    "modules": ("sys", "manipulates sys.modules"),
    "meta_path": ("sys", "installs an import hook"),
    "path_hooks": ("sys", "installs an import hook"),
    "settrace": ("sys", "installs a trace function"),
    "setprofile": ("sys", "installs a profile function"),
    "excepthook": ("sys", "replaces the exception hook"),
    "_exit": ("os", "ends the kernel (os._exit)"),
    "kill": ("os", "sends a signal to a process (os.kill)"),
    "abort": ("os", "ends the kernel (os.abort)"),
}
SUSPICIOUS_DUNDERS = {
    "__code__": "rewrites a function's code",
    "__globals__": "reaches into a function's globals",
    "__builtins__": "touches __builtins__",
    "__import__": "replaces or calls __import__",
    "__class__": "reassigns an object's class",
}
SUSPICIOUS_CALLS = {  # called by bare name
    "exit": "tries to end the kernel (exit)",
    "quit": "tries to end the kernel (quit)",
}
SUSPICIOUS_METHODS = {  # called as a method of anything
    "set_custom_exc": "installs an IPython exception handler",
    "register_post_execute": "installs an IPython hook",
}
SUSPICIOUS_IMPORTS = {
    "autograder": "imports the grader",
    "importlib": "uses importlib",
    "builtins": "imports builtins",
    "ctypes": "uses ctypes",
    "gc": "uses the garbage collector's object lists",
    "sqlite3": "opens an sqlite database",
    "nbgrader": "imports nbgrader",
}


def _python_source(cell_source: str) -> str:
    """The cell as Python (IPython magics and shell escapes turned into calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(cell_source)
    except Exception:
        return cell_source


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


class _Scanner(ast.NodeVisitor):
    def __init__(self, protected_names: set[str]):
        self.protected = protected_names  # names bound to protected modules or their members
        self.findings: list[tuple[int, str]] = []

    def add(self, node: ast.AST, what: str) -> None:
        self.findings.append((getattr(node, "lineno", 0), what))

    # names bound by imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            root = alias.name.split(".")[0]
            what = SUSPICIOUS_IMPORTS.get(root)
            if what:
                self.add(node, f"{what} (import {alias.name})")
            if root in PROTECTED_MODULES:
                self.protected.add(alias.asname or root)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        root = (node.module or "").split(".")[0]
        what = SUSPICIOUS_IMPORTS.get(root)
        if what:
            self.add(node, f"{what} (from {node.module} import ...)")
        if root in PROTECTED_MODULES:
            for alias in node.names:
                self.protected.add(alias.asname or alias.name)
        self.generic_visit(node)

    # modifying protected objects
    def _check_target(self, target: ast.AST, node: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._check_target(element, node)
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            root = _root_name(target)
            if root in self.protected:
                self.add(node, f"modifies {_dotted(target) or root}")

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_target(target, node)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_target(node.target, node)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._check_target(target, node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name in ("setattr", "delattr") and node.args:
            root = _root_name(node.args[0])
            if root in self.protected:
                self.add(node, f"{name} on {_dotted(node.args[0]) or root}")
        if isinstance(func, ast.Name) and name in SUSPICIOUS_CALLS:
            self.add(node, SUSPICIOUS_CALLS[name])
        if isinstance(func, ast.Attribute) and name in SUSPICIOUS_METHODS:
            self.add(node, SUSPICIOUS_METHODS[name])
        if name == "exec" or name == "eval" or name == "compile":
            self.add(node, f"runs generated code ({name})")
        if _dotted(func) == "sys.exit":
            self.add(node, "ends the cell with sys.exit")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in SUSPICIOUS_DUNDERS:
            self.add(node, SUSPICIOUS_DUNDERS[node.attr])
        owner = SUSPICIOUS_ATTRIBUTES.get(node.attr)
        if owner and _root_name(node) == owner[0]:
            self.add(node, owner[1])
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in SUSPICIOUS_DUNDERS:
            self.add(node, SUSPICIOUS_DUNDERS[node.id])
        self.generic_visit(node)


def _scan(source: str, protected: set[str]) -> list:
    """Parse one cell (never run it) and return its findings; adds its imports to
    ``protected``. A cell that is not valid Python has no findings."""
    try:
        tree = ast.parse(_python_source(source))
    except SyntaxError:
        return []
    scanner = _Scanner(protected)
    scanner.visit(tree)
    return scanner.findings


def scan_notebook(nb, released=None) -> list[str]:
    """Flags for the code cells of ``nb`` that are not identical to a cell of ``released``
    (the notebook as distributed; None scans every cell). Imports in unchanged cells still
    count, so ``import torch`` in the setup cell makes ``torch.x = ...`` later a finding."""
    released_sources = {c.source for c in released.cells} if released is not None else set()
    protected_imports = []
    changed = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.source in released_sources:
            protected_imports.append((index, cell.source))
        else:
            changed.append((index, cell.source))
    protected: set[str] = set()
    for _, source in protected_imports:  # learn the names the course's own cells import
        _scan(source, protected)
    flags = []
    for index, source in changed:
        for line, what in _scan(source, protected):
            flags.append(f"scan: cell {index}, line {line}: {what}")
    return list(dict.fromkeys(flags))
