"""Static scan of a submission for tampering, done outside the kernel.

Grades are decided outside the kernel (``autograder.verdicts``); tampering inside it can at
worst spoil the submission's own evidence. This scan reads the
student's code without running it and reports what an instructor should look at: patching of
torch, fusionlab or the grader, import-system and builtins tricks, ending the kernel. The
findings are flags in the summary and in results.json; they do not change the score.

Only cells that differ from every cell of the released notebook are scanned, so the course's
own setup code is never reported. Sources are compared without the ``# NBVAL_CHECK_OUTPUT``
lines that the student copy in ``notebooks/`` drops (``autograder.masters.OUTPUT_MARKER``), so
a notebook started from either copy is compared like for like.
"""

from __future__ import annotations

import ast
import functools

from .masters import OUTPUT_MARKER

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
GENERATED_CODE = ("exec", "eval", "compile")  # as builtins: by bare name or builtins.<name>
SUSPICIOUS_METHODS = {  # called as a method of anything
    "set_custom_exc": "installs an IPython exception handler",
    "register_post_execute": "installs an IPython hook",
    "register_magic_function": "installs an IPython magic",
    "start_new_thread": "starts a thread",
    "fork": "starts a process (fork)",
    "forkpty": "starts a process (forkpty)",
}
# IPython's events: ``get_ipython().events.register("post_run_cell", hook)`` and friends
IPYTHON_EVENTS = ("pre_execute", "pre_run_cell", "post_execute", "post_run_cell",
                  "shell_initialized")
# what starts a thread or a process, by the last part of its dotted name
CONCURRENCY = {
    "Thread": "starts a thread", "Timer": "starts a thread (threading.Timer)",
    "Process": "starts a process", "Popen": "starts a process", "Pool": "starts processes",
    "ThreadPoolExecutor": "starts threads", "ProcessPoolExecutor": "starts processes",
    "run": None, "call": None, "check_call": None, "check_output": None,  # subprocess.*
    "system": None, "spawnv": None, "spawnl": None, "execv": None, "execvp": None,  # os.*
}
CONCURRENCY_MODULES = ("threading", "_thread", "multiprocessing", "subprocess", "os",
                       "concurrent")
SUSPICIOUS_IMPORTS = {
    "autograder": "imports the grader",
    "importlib": "uses importlib",
    "builtins": "imports builtins",
    "ctypes": "uses ctypes",
    "gc": "uses the garbage collector's object lists",
    "sqlite3": "opens an sqlite database",
    "nbgrader": "imports nbgrader",
}


@functools.lru_cache(maxsize=1)
def _transformer():
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()


def _python_source(cell_source: str) -> str:
    """The cell as Python (IPython magics and shell escapes turned into calls)."""
    try:
        return _transformer().transform_cell(cell_source)
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
    def __init__(self, protected_names: set[str], imported: dict[str, str] | None = None,
                 borrowed: tuple[str, ...] = (), exercise: str = ""):
        self.protected = protected_names  # names bound to protected modules or their members
        self.imported = imported if imported is not None else {}  # name -> module it came from
        self.borrowed = set(borrowed)  # the exercise's own implementations (a TODO cell only)
        self.exercise = exercise
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
            self.imported[alias.asname or root] = alias.name if alias.asname else root
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        root = (node.module or "").split(".")[0]
        what = SUSPICIOUS_IMPORTS.get(root)
        if what:
            self.add(node, f"{what} (from {node.module} import ...)")
        if root in PROTECTED_MODULES:
            for alias in node.names:
                self.protected.add(alias.asname or alias.name)
        for alias in node.names:
            self.imported[alias.asname or alias.name] = f"{node.module or ''}.{alias.name}"
            if alias.name in self.borrowed and root in BORROWED_FROM:
                self.add(node, self._borrowed_words(f"{node.module}.{alias.name}"))
        self.generic_visit(node)

    def _borrowed_words(self, what: str) -> str:
        return (f"uses {what}, the package's or torch's own implementation of "
                f"{self.exercise or 'this exercise'}: the TODO asks for your own")

    def _borrowed_name(self, node: ast.AST) -> str | None:
        """``node`` names a borrowed implementation from torch or fusionlab: its dotted name."""
        if isinstance(node, ast.Attribute) and node.attr in self.borrowed:
            root = _root_name(node)
            origin = self.imported.get(root or "", "")
            if origin.split(".")[0] in BORROWED_FROM:
                return _dotted(node) or node.attr
        if isinstance(node, ast.Name):  # by its own name or an alias of it
            origin = self.imported.get(node.id, "")
            if origin.split(".")[0] in BORROWED_FROM and origin.split(".")[-1] in self.borrowed:
                return origin
        return None

    # modifying protected objects
    def _check_target(self, target: ast.AST, node: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._check_target(element, node)
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            root = _root_name(target)
            if root in self.protected:
                self.add(node, f"modifies {_dotted(target) or root}")
            elif root in self.imported and isinstance(target, ast.Attribute):
                self.add(node, f"patches {_dotted(target) or root} (an imported module's or "
                               "class's attribute)")

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
            if root in self.protected or root in self.imported:
                self.add(node, f"{name} on {_dotted(node.args[0]) or root} (patches it)")
        dotted = _dotted(func)
        if isinstance(func, ast.Attribute) and name == "register" and \
                _dotted(func.value).endswith("events"):
            self.add(node, "installs an IPython hook (events.register)")
        elif any(isinstance(arg, ast.Constant) and arg.value in IPYTHON_EVENTS
                 for arg in node.args):
            self.add(node, "installs an IPython hook")
        if name in CONCURRENCY:
            origin = self.imported.get((dotted or name).split(".")[0], "")
            if origin.split(".")[0] in CONCURRENCY_MODULES:
                self.add(node, f"{CONCURRENCY[name] or 'starts a process'} ({dotted or name})")
        borrowed = self._borrowed_name(func)
        if borrowed:
            self.add(node, self._borrowed_words(borrowed))
        if isinstance(func, ast.Name) and name in SUSPICIOUS_CALLS:
            self.add(node, SUSPICIOUS_CALLS[name])
        if isinstance(func, ast.Attribute) and name in SUSPICIOUS_METHODS:
            self.add(node, SUSPICIOUS_METHODS[name])
        if name in GENERATED_CODE and (
                isinstance(func, ast.Name) or _root_name(func) in ("builtins", "__builtins__")):
            # the builtins only: model.eval() and torch.compile() are ordinary calls
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

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            borrowed = self._borrowed_name(base)
            if borrowed:
                self.add(node, self._borrowed_words(borrowed).replace("uses ", "subclasses ", 1))
        self.imported.pop(node.name, None)  # the cell's own class from here on
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.imported.pop(node.name, None)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in SUSPICIOUS_DUNDERS:
            self.add(node, SUSPICIOUS_DUNDERS[node.id])
        self.generic_visit(node)


BORROWED_FROM = ("torch", "fusionlab")  # where an exercise's own implementation may come from


def _scan(source: str, protected: set[str], imported: dict | None = None,
          borrowed: tuple[str, ...] = (), exercise: str = "") -> list:
    """Parse one cell (never run it) and return its findings; adds its imports to
    ``protected`` (and ``imported``). A cell that is not valid Python has no findings; one too
    deeply nested for Python's parser (``1+1+...+1`` three thousand times) has that finding."""
    scanner = _Scanner(protected, imported, borrowed, exercise)
    try:
        tree = ast.parse(_python_source(source))
        scanner.visit(tree)
    except SyntaxError:
        return []
    except (RecursionError, MemoryError, ValueError) as exc:
        return [(0, f"could not be scanned: nested too deeply for Python's parser "
                    f"({type(exc).__name__})")]
    return scanner.findings


def _comparable(source: str) -> str:
    """A cell's source as compared with the released cells: without nbval's output markers
    and trailing whitespace (which editors and the student copy may change)."""
    lines = [line.rstrip() for line in source.splitlines()]
    return "\n".join(line for line in lines if not OUTPUT_MARKER.match(line + "\n")).strip("\n")


def changed_cells(nb, released=None) -> list[int]:
    """Indices of the code cells of ``nb`` that are not identical to a cell of ``released``
    (all code cells when ``released`` is None)."""
    released_sources = ({_comparable(c.source) for c in released.cells}
                        if released is not None else set())
    return [index for index, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and _comparable(cell.source) not in released_sources]


def _todo_exercises(exercises) -> dict[str, object]:
    """TODO cell grade_id -> its exercise."""
    return {e.solution: e for e in exercises or () if getattr(e, "solution", None)}


def _borrowed(exercise) -> tuple[str, ...]:
    """The names a TODO cell of ``exercise`` must not take from torch or fusionlab: the
    declaration's ``borrowed`` and the exercise's own target (``fusionlab``'s class of the same
    name, e.g. ``CoAttentionBlock``)."""
    return tuple(dict.fromkeys([*getattr(exercise, "borrowed", ()),
                                getattr(exercise, "target", "")])) if exercise else ()


@functools.lru_cache(maxsize=16)
def _learned(sources: tuple[str, ...]) -> tuple[frozenset, tuple]:
    """The names the course's own (unchanged) cells import, in order: the same cells for most
    submissions of a batch, so they are parsed once, not once per submission."""
    protected: set[str] = set()
    imported: dict[str, str] = {}
    for source in sources:
        _scan(source, protected, imported)
    return frozenset(protected), tuple(imported.items())


def scan_notebook(nb, released=None, exercises=()) -> list[str]:
    """Flags for the code cells of ``nb`` that are not identical to a cell of ``released``
    (the notebook as distributed; None scans every cell). Imports in unchanged cells still
    count, so ``import torch`` in the setup cell makes ``torch.x = ...`` later a finding.
    ``exercises`` (the assignment's ``registry.Exercise``s): a TODO cell that subclasses, wraps
    or calls torch's or fusionlab's own implementation of its exercise is flagged too."""
    from .submission import nbgrader_meta

    changed = changed_cells(nb, released)
    todo = _todo_exercises(exercises)
    learned, imports = _learned(tuple(cell.source for index, cell in enumerate(nb.cells)
                                      if cell.cell_type == "code" and index not in changed))
    protected, imported = set(learned), dict(imports)
    flags = []
    for index in changed:
        cell = nb.cells[index]
        exercise = todo.get(nbgrader_meta(cell).get("grade_id"))
        for line, what in _scan(cell.source, protected, imported, _borrowed(exercise),
                                getattr(exercise, "target", "")):
            flags.append(f"scan: cell {index}, line {line}: {what}")
    return list(dict.fromkeys(flags))
