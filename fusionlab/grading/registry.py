"""The exercise registry: every graded TODO of the course, declared once.

An ``Exercise`` says what the student writes (``target``, defined in the TODO cell
``solution``), how its behaviour is recorded (``collect``, and ``train`` for an accuracy cell),
the checks that judge that record and the order the self-check runs them in, and its graded
cells (``GradedCell``: grade_id, check, points, visible or hidden, whether it trains). The
self-check (``fusionlab.check.<name>``), the grader's verdict tables (``autograder.verdicts``),
the pytest markers, the parametrised contract, parity and forged-report tests, the demo
examples and the threshold tool all read these declarations; nothing repeats them.

The trusted side of an exercise (its reference formulas, the grader's evaluation data, the
known mistakes) lives in ``autograder.hidden``, never in this package: no answer to a TODO is
importable from ``fusionlab``.

Each part declares its exercises in two files side by side: ``fusionlab/part<N>/exercises.toml``,
the table of what the student writes and of the graded cells (the rubric: grade_id, check,
points, visibility, training, text), and ``exercises.py``, the behaviour (evidence collectors,
checks, training), which reads the table through ``Declarations``. ``discover`` imports every
part's ``exercises`` module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .known import KnownAnswers
from .results import CheckResult, implemented_check, report, run
from .seeds import SELF_CHECK_SEED
from .toolkit import target_name

Check = Callable[[dict, dict], CheckResult]


@dataclass(frozen=True)
class GradedCell:
    """One graded cell of a notebook: its ``grade_id``, the ``check`` that decides it, its
    ``points``, what it checks in words (``description``: the rubric's text and the cell's
    comment), whether its test is ``visible`` in the notebook (the assert the student sees,
    rerun by the grader) and whether it ``trains`` (decided on the clean room's training run)."""

    grade_id: str
    check: str
    points: int
    description: str
    visible: bool = False
    trains: bool = False

    @property
    def kind(self) -> str:
        return "visible" if self.visible else "hidden"


@dataclass(frozen=True)
class Exercise:
    """One graded TODO (see the module docstring).

    ``collect(target, seed, weights=None)`` returns the evidence dict of ``target`` (never
    raising): with ``weights`` the module is loaded with them (the self-check's known weights),
    otherwise every parameter is moved off its initial value. ``train(target, seed, inputs)``
    trains a model built on ``target`` as the notebook does and returns its predictions on
    ``inputs``, the grader's evaluation inputs (labels stay with the grader). ``known``: the
    part's stored known answers (``fusionlab.grading.known.KnownAnswers``): the self-check loads
    the exercise's known weights and compares with its stored facts. ``self_check_facts(ev,
    seed)``, where given, computes the self-check's facts instead (properties, or the stored
    answers plus inputs drawn on this machine). ``borrowed`` names the
    implementations of the same computation, in the package or in torch, that a TODO cell must
    not use; the static scan flags them.
    """

    name: str
    assignment: str
    target: str
    solution: str
    title: str
    collect: Callable[..., dict]
    checks: Mapping[str, Check]
    self_checks: tuple[str, ...]
    cells: tuple[GradedCell, ...]
    known: KnownAnswers | None = None
    self_check_facts: Callable[[dict, int], dict] | None = None
    train: Callable[..., dict] | None = None
    borrowed: tuple[str, ...] = ()
    notes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        unknown = [c.check for c in self.cells if c.check not in self.checks] + [
            name for name in self.self_checks if name not in self.checks]
        if unknown:
            raise ValueError(f"exercise {self.name}: no check named {', '.join(unknown)}")
        if any(c.trains for c in self.cells) and self.train is None:
            raise ValueError(f"exercise {self.name}: a cell trains but there is no train()")

    @property
    def points(self) -> int:
        return sum(cell.points for cell in self.cells)

    def cell(self, grade_id: str) -> GradedCell:
        for cell in self.cells:
            if cell.grade_id == grade_id:
                return cell
        raise KeyError(grade_id)

    @property
    def trains(self) -> bool:
        return any(cell.trains for cell in self.cells)

    def results(self, target, seed: int = SELF_CHECK_SEED) -> list[CheckResult]:
        """The self-check verdicts on ``target``; never raises."""
        weights = self.known.weights(self.name) if self.known else None
        ev = self.collect(target, seed, weights=weights)
        try:
            if self.self_check_facts is not None:
                facts = self.self_check_facts(ev, seed)
            else:
                facts = self.known.facts(self.name, ev) if self.known else {}
        except Exception as error:  # noqa: BLE001 (evidence of an unexpected form)
            facts = {"unavailable": f"{type(error).__name__}: {error}"}
        return run(self.checks, self.self_checks, ev, facts)

    def self_check(self, target) -> None:
        """Print the self-check of ``target`` (what the notebook's self-check cell calls)."""
        report(target_name(target), self.results(target))


class Declarations:
    """One part's exercise table, ``exercises.toml`` beside the module ``module_file``.

    Each table row declares an exercise: its ``target``, TODO cell ``solution``, ``title``,
    ``self_checks`` order and ``cells``, ``grade_id = {check, points, visible, trains, text}``.
    A text may name the part's settings: ``{c.<field>}`` is a field of ``config``, ``{name}`` a
    phrase of the file's ``[phrases]`` table or one of ``texts`` (the exercise's, given to
    ``exercise``). ``exercise(name, ...)`` adds the behaviour
    (collector, checks, ...) and returns the ``Exercise``.

    Every exercise's first check, ``implemented``, says whether the TODO is written at all:
    ``implemented`` is that check, or the evidence key whose error says so (the part's default,
    which an exercise may override).
    """

    _EXERCISE_KEYS = {"target", "solution", "title", "self_checks", "cells"}
    _CELL_KEYS = {"check", "points", "visible", "trains", "text"}

    def __init__(self, module_file: str, assignment: str, config,
                 implemented: str | Check = "error/out/shape0"):
        self.path = Path(module_file).with_name("exercises.toml")
        self.assignment = assignment
        self.implemented = implemented
        table = tomllib.loads(self.path.read_text(encoding="utf-8"))
        phrases = {key: text.format(c=config) for key, text in table.pop("phrases", {}).items()}
        self._fill = dict(phrases, c=config)
        self._table = table

    @property
    def names(self) -> list[str]:
        return list(self._table)

    def exercise(self, name: str, checks: Mapping[str, Check],
                 implemented: str | Check | None = None, texts: Mapping | None = None,
                 **behaviour) -> Exercise:
        """The ``Exercise`` of row ``name``, with its ``checks`` (after ``implemented``), the
        values its texts name (``texts``) and ``behaviour``: ``collect`` and the optional
        fields of ``Exercise``."""
        fill = dict(self._fill, **(texts or {}))
        implemented = implemented or self.implemented
        if isinstance(implemented, str):
            implemented = implemented_check(implemented)
        checks = {"implemented": implemented, **checks}
        row = self._table[name]
        self._refuse_unknown(name, row, self._EXERCISE_KEYS)
        cells = []
        for grade_id, cell in row["cells"].items():
            self._refuse_unknown(f"{name}.cells.{grade_id}", cell, self._CELL_KEYS)
            cells.append(GradedCell(grade_id, cell["check"], cell["points"],
                                    cell["text"].format(**fill),
                                    visible=cell.get("visible", False),
                                    trains=cell.get("trains", False)))
        return Exercise(name=name, assignment=self.assignment, target=row["target"],
                        solution=row["solution"], title=row["title"],
                        self_checks=tuple(row["self_checks"]), cells=tuple(cells),
                        checks=checks, **behaviour)

    def _refuse_unknown(self, where: str, row: dict, allowed: set) -> None:
        unknown = sorted(set(row) - allowed)
        if unknown:  # a misspelt key ("visble") would otherwise be silently ignored
            raise ValueError(f"{self.path}: [{where}] has unknown keys {', '.join(unknown)} "
                             f"(allowed: {', '.join(sorted(allowed))})")


# ----------------------------------------------------------------------------- the table

_EXERCISES: dict[str, Exercise] = {}
_CELLS: dict[str, tuple[Exercise, GradedCell]] = {}
_DISCOVERED = False


def register(exercise: Exercise) -> Exercise:
    """Add ``exercise`` to the registry (once: a second exercise or graded cell of the same
    name is a ValueError)."""
    known = _EXERCISES.get(exercise.name)
    if known is not None and known is not exercise:
        raise ValueError(f"two exercises are named {exercise.name!r}")
    taken = [c.grade_id for c in exercise.cells
             if c.grade_id in _CELLS and _CELLS[c.grade_id][0] is not exercise]
    if taken:
        raise ValueError(f"graded cells {', '.join(taken)} are declared twice")
    _EXERCISES[exercise.name] = exercise
    for cell in exercise.cells:
        _CELLS[cell.grade_id] = (exercise, cell)
    return exercise


def discover() -> None:
    """Import every ``fusionlab.part<N>.exercises`` module (they register their exercises)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    import fusionlab

    import_parts(fusionlab, ".exercises")
    _DISCOVERED = True


def import_parts(package, suffix: str = "") -> None:
    """Import ``<package>.part<N><suffix>`` for every ``part<N>`` sub-package of ``package``, in
    name order (a part without that module is passed over; an import error inside it is not)."""
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.ispkg and module.name.startswith("part"):
            name = f"{package.__name__}.{module.name}{suffix}"
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as error:
                if error.name != name:
                    raise


def load(module: str) -> None:
    """Import a module that registers exercises outside ``fusionlab`` (a course of its own)."""
    importlib.import_module(module)


def exercise(name: str) -> Exercise:
    discover()
    try:
        return _EXERCISES[name]
    except KeyError:
        raise KeyError(f"no exercise named {name!r}; known: {', '.join(sorted(_EXERCISES))}") \
            from None


def exercises(assignment: str | None = None) -> list[Exercise]:
    """Every registered exercise, or those of ``assignment``, in declaration order."""
    discover()
    return [e for e in _EXERCISES.values() if assignment is None or e.assignment == assignment]


def graded_cell(grade_id: str) -> tuple[Exercise, GradedCell] | None:
    """The exercise and declaration of graded cell ``grade_id``, or None."""
    discover()
    return _CELLS.get(grade_id)
