"""The grading machinery every exercise shares (``fusionlab.grading``, ``autograder.cleanroom``,
``autograder.verdicts``), tested on its own, without nbgrader."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import signal
import stat
import time

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

import fusionlab
from autograder import cleanroom, verdicts
from autograder.authoring import known_answers, trial
from fusionlab import check
from fusionlab.grading import known, registry, seeds
from fusionlab.grading.cleanroom import (
    CellTimeout,
    run_job,
    setup_imports,
    strip_magics,
    time_limit,
)
from fusionlab.grading.registry import Exercise, GradedCell
from fusionlab.grading.results import CheckResult, report
from fusionlab.grading.toolkit import load, save

EXERCISES = registry.exercises()


# ----------------------------------------------------------------------------- seeds

def test_each_stream_of_each_exercise_draws_its_own_numbers():
    draws = {(exercise, stream): torch.rand(4, generator=seeds.generator(7, exercise, stream))
             for exercise in ("gated", "gmu") for stream in seeds.Stream}
    flat = [tuple(v.tolist()) for v in draws.values()]
    assert len(set(flat)) == len(flat)
    again = torch.rand(4, generator=seeds.generator(7, "gated", seeds.Stream.INPUTS))
    assert torch.equal(again, draws[("gated", seeds.Stream.INPUTS)])
    other = torch.rand(4, generator=seeds.generator(8, "gated", seeds.Stream.INPUTS))
    assert not torch.equal(other, draws[("gated", seeds.Stream.INPUTS)])


def test_grading_seeds_depend_on_the_secret_and_the_student_only(tmp_path):
    secret = verdicts.course_secret(tmp_path)
    assert stat.S_IMODE((tmp_path / verdicts.SECRET_FILE).stat().st_mode) == 0o600
    assert verdicts.course_secret(tmp_path) == secret  # kept across runs
    alice = verdicts.seeds_for(secret, "part1", "alice")
    assert alice == verdicts.seeds_for(secret, "part1", "alice")
    assert alice != verdicts.seeds_for(secret, "part1", "bob")
    assert alice != verdicts.seeds_for(secret, "part2", "alice")
    assert alice.inputs != alice.evaluation
    assert verdicts.seeds_for(verdicts.course_secret(tmp_path, reseed=True), "part1",
                              "alice") != alice


# ----------------------------------------------------------------------------- evidence

@pytest.mark.parametrize("exercise", [pytest.param(e, id=e.name) for e in EXERCISES])
def test_evidence_is_plain_data(exercise, tmp_path):
    target = trial.namespace(exercise)[exercise.target]
    ev = exercise.collect(target, 3)
    loaded = load(save(ev, tmp_path / "e.npz"))  # allow_pickle=False
    assert set(loaded) == set(ev)
    assert all(v.dtype != object for v in loaded.values())


def test_stored_known_answers_equal_a_fresh_computation():
    for package, fresh in known_answers.compute().items():
        stored = load(known_answers.path_of(package))
        assert set(stored) == set(fresh), package
        for key, value in fresh.items():
            if value.dtype.kind in "fc":
                np.testing.assert_allclose(stored[key], value, rtol=1e-5, atol=1e-6,
                                           err_msg=key)
            else:  # text, integers, booleans (e.g. which samples a rule drops)
                assert np.array_equal(stored[key], value), key


def test_facts_survive_packing():
    facts = {"variants": {"reference": {"out/eq": np.arange(3.0)}}, "identified": None,
             "pair": ("a", "b"), "n": 2}
    back = known.unpack(known.pack(facts))
    np.testing.assert_array_equal(back["variants"]["reference"]["out/eq"], np.arange(3.0))
    assert back["identified"] is None and back["pair"] == ["a", "b"] and back["n"] == 2


# ----------------------------------------------------------------------------- registry

def _toy_exercise(**changes) -> Exercise:
    fields = dict(name="probe", assignment="probe", target="f", solution="f_solution",
                  title="probe", collect=lambda f, seed, weights=None: {},
                  checks={"ok": lambda ev, facts: CheckResult("ok", True, "")},
                  self_checks=("ok",), cells=(GradedCell("probe_ok", "ok", 1, "ok"),))
    return Exercise(**{**fields, **changes})


def test_a_declaration_naming_a_missing_check_or_training_is_refused():
    with pytest.raises(ValueError, match="no check named missing"):
        _toy_exercise(cells=(GradedCell("probe_ok", "missing", 1, "ok"),))
    with pytest.raises(ValueError, match="no train"):
        _toy_exercise(cells=(GradedCell("probe_ok", "ok", 1, "ok", trains=True),))


def test_an_exercise_or_a_graded_cell_is_declared_once():
    first = registry.exercises()[0]
    with pytest.raises(ValueError, match="two exercises"):
        registry.register(_toy_exercise(name=first.name))
    with pytest.raises(ValueError, match="declared twice"):
        registry.register(_toy_exercise(name="probe2", cells=(
            GradedCell(first.cells[0].grade_id, "ok", 1, "ok"),)))


def test_every_self_check_is_reachable_by_its_name_and_an_unknown_one_is_explained():
    for exercise in EXERCISES:
        assert getattr(check, exercise.name) == exercise.self_check
    # Other tests may have loaded the toy course, whose exercise registers too: compare with
    # the registry as it is now, and require every exercise of the course among them.
    assert set(check.exercises()) == {e.name for e in registry.exercises()}
    assert {e.name for e in EXERCISES} <= set(check.exercises())
    with pytest.raises(AttributeError, match="the exercises are"):
        check.no_such_exercise  # noqa: B018


def test_report_wraps_long_verdicts_at_word_boundaries(capsys):
    report("X", [CheckResult("equivalence", False, "word " * 60)])
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 100 for line in lines) and len(lines) > 3
    assert all(not line.endswith("wor") for line in lines)


# ----------------------------------------------------------------------------- the clean room

def _job(tmp_path, todo, visible=(), setup="import math", timeout=5.0):
    job = tmp_path / "job"
    job.mkdir()
    (job / "job.json").write_text(json.dumps({
        "seed": 1, "setup": setup, "todo": [list(c) for c in todo],
        "visible": [list(c) for c in visible], "exercises": [], "modules": [],
        "cell_timeout": timeout}))
    out = tmp_path / "out"
    out.mkdir()
    return run_job(job, out)


def test_the_clean_room_records_what_each_cell_raised_and_goes_on(tmp_path):
    cells = _job(tmp_path, [("a_solution", "x = 1\nraise ValueError('bad')"),
                            ("b_solution", "import sys\nsys.exit(3)"),
                            ("c_solution", "y = math.sqrt(4)")],
                 visible=[("c_visible", "assert y == 2"), ("d_visible", "assert x == 2")])
    assert cells["todo"]["a_solution"].startswith("ValueError: bad (cell a_solution, line 2")
    assert cells["todo"]["b_solution"].startswith("SystemExit: 3")
    assert cells["todo"]["c_solution"] == ""
    assert cells["visible"] == {"c_visible": "",
                                "d_visible": "AssertionError (cell d_visible, line 1: "
                                             "assert x == 2)"}


def test_a_cell_that_hangs_is_stopped_at_its_limit_even_if_it_catches_exceptions(tmp_path):
    cells = _job(tmp_path, [("a_solution", "import time\nwhile True:\n    try:\n"
                                           "        time.sleep(0.05)\n    except Exception:\n"
                                           "        pass")], timeout=0.5)
    assert "ran past its 0.5 s limit" in cells["todo"]["a_solution"]


def test_a_timer_a_todo_cell_sets_is_gone_after_it_and_cannot_stretch_the_next_cells_limit(
        tmp_path):
    handler = signal.getsignal(signal.SIGALRM)
    cells = _job(tmp_path, [("a_solution", "import signal\n"
                                           "signal.signal(signal.SIGALRM, lambda *a: None)\n"
                                           "signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)"),
                            ("b_solution", "while True:\n    pass")], timeout=0.5)
    assert cells["todo"]["a_solution"] == ""
    assert "ran past its 0.5 s limit" in cells["todo"]["b_solution"]
    assert signal.getsignal(signal.SIGALRM) is handler  # the cell's handler is gone
    assert signal.getitimer(signal.ITIMER_REAL)[1] == 0.0  # and so is its repeating timer


class _EnclosingLimit(Exception):
    pass


@pytest.fixture
def enclosing_alarm():
    """A SIGALRM limit around the test, as a test runner's per-test timeout sets one;
    ``arm(seconds)`` starts it. Disarmed and restored afterwards."""
    def fire(signum, frame):
        raise _EnclosingLimit

    previous = signal.signal(signal.SIGALRM, fire)
    yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_a_cell_limit_keeps_what_is_left_of_an_enclosing_limit(enclosing_alarm):
    enclosing_alarm(30)
    with pytest.raises(CellTimeout, match="ran past its 0.2 s limit"):
        with time_limit(0.2, "the cell"):
            time.sleep(5)
    left, _ = signal.getitimer(signal.ITIMER_REAL)
    assert 25 < left <= 30  # not cancelled, not restarted


def test_an_enclosing_limit_that_comes_first_fires_inside_a_cell_limit(enclosing_alarm):
    enclosing_alarm(0.2)
    start = time.monotonic()
    with pytest.raises(_EnclosingLimit):
        with time_limit(30, "the cell"):
            time.sleep(5)
    assert time.monotonic() - start < 2
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_the_clean_room_runs_the_setup_imports_only_and_no_magics():
    setup = "%matplotlib inline\nimport math\nprint('hello')\nfrom os import path\nx = 1"
    assert setup_imports(setup) == "import math\nfrom os import path"
    assert strip_magics("!pip install x\ny = 2").splitlines()[1] == "y = 2"


def _notebook(*cells):
    nb = new_notebook()
    for grade_id, source, grade in cells:
        nb.cells.append(new_code_cell(source, metadata={"nbgrader": {
            "grade_id": grade_id, "grade": grade, "solution": not grade}}))
    return nb


def test_a_pasted_copy_of_a_todo_cell_runs_in_notebook_order():
    exercise = registry.exercise("gated")
    nb = _notebook(("gated_solution", "a = 1", False), ("gated_solution", "a = 2", False),
                   ("other", "a = 3", False))
    assert cleanroom.todo_cells(nb, [exercise]) == [["gated_solution", "a = 1"],
                                                   ["gated_solution", "a = 2"]]


def test_grading_refuses_a_graded_cell_no_exercise_declares():
    nb = _notebook(("gated_visible_shape", "", True), ("nobody_knows_me", "", True))
    with pytest.raises(cleanroom.SuiteError, match="nobody_knows_me"):
        cleanroom.exercises_of(nb)


# ----------------------------------------------------------------------------- no answer

def _public_objects():
    """Every public class and function defined in ``fusionlab``."""
    found = {}
    for module in pkgutil.walk_packages(fusionlab.__path__, "fusionlab."):
        mod = importlib.import_module(module.name)
        for name, obj in vars(mod).items():
            if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if getattr(obj, "__module__", "").startswith("fusionlab."):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


# A self-check takes a second at most (the solutions: 0.1 s): an object whose self-check is
# still running at this limit answers nothing. Without it, one pairing alone (a plot function
# given Part 3's dropout inputs) drew for minutes.
ANSWER_LIMIT_S = 10


def _answers(exercise, obj) -> bool:
    """Whether ``obj`` passes every self-check of ``exercise`` within ANSWER_LIMIT_S."""
    try:
        with time_limit(ANSWER_LIMIT_S, f"{exercise.name}'s self-check"):
            results = exercise.results(obj)
    except CellTimeout:
        return False
    finally:
        plt.close("all")  # what a plot function drew when given an exercise's inputs
    return all(r.passed for r in results)


def test_no_public_fusionlab_object_answers_a_graded_todo(capsys):
    """No class or function of the package passes every self-check of any exercise: the
    answer to a TODO is never importable (a later part states what to use instead). The
    master's own solution of each exercise does pass, within the same limit: the search would
    find an answer."""
    answers = []
    objects = _public_objects()
    for exercise in EXERCISES:
        solution = trial.namespace(exercise)[exercise.target]
        assert _answers(exercise, solution), f"the solution does not answer {exercise.name}"
        for name, obj in objects.items():
            if inspect.isclass(obj) != inspect.isclass(solution):
                continue
            if _answers(exercise, obj):
                answers.append(f"{name} answers {exercise.name}")
    assert not answers, answers


def test_a_notebook_of_another_course_needs_its_own_declarations(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"fusionlab": {"exercises": "missing_module"}})
    with pytest.raises(cleanroom.SuiteError, match="no folder holds them"):
        cleanroom.exercises_of(nb)


# ----------------------------------------------------------------------------- verdicts

def test_missing_or_corrupt_clean_room_evidence_scores_zero_with_the_reason(tmp_path):
    exercise = registry.exercise("gated")
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / "gated.npz").write_bytes(b"not a zip file")
    (tmp_path / "cells.json").write_text(json.dumps({"todo": {"gated_solution": ""},
                                                     "visible": {}}))
    evidence, cells, error = cleanroom._read_results(tmp_path, [exercise])
    assert error == "" and "could not be read" in str(evidence["gated"]["status"])
    measurement = cleanroom.Measurement(evidence, {}, cells)
    results = verdicts.decide_exercise(exercise, measurement, trial.SEEDS)
    assert set(results) == {c.grade_id for c in exercise.cells}
    assert not any(r.passed for r in results.values())
    assert all("could not be read" in r.message for r in results.values())


def test_a_clean_room_without_results_fails_every_cell_with_its_reason(tmp_path):
    exercise = registry.exercise("gated")
    evidence, cells, error = cleanroom._read_results(tmp_path, [exercise])
    assert error == "the clean room wrote no results"
    measurement = cleanroom.Measurement(error="the clean room ran past its 90 s limit")
    results = verdicts.decide_exercise(exercise, measurement, trial.SEEDS)
    assert all(r.message == "not graded: the clean room ran past its 90 s limit"
               for r in results.values())


def test_a_todo_cell_that_raised_is_the_reason_nothing_was_built():
    exercise = registry.exercise("gated")
    measurement = cleanroom.Measurement(
        {"gated": {"status": np.array("error: the TODO cells define no `GatedFusionModel`")}},
        {}, {"todo": {"gated_solution": "SyntaxError: invalid syntax (cell gated_solution, "
                                        "line 3: def forward(self img_feat):)"}})
    results = verdicts.decide_exercise(exercise, measurement, trial.SEEDS)
    assert "your TODO cell raised SyntaxError" in results["gated_gate_init"].message


# ----------------------------------------------------------------------------- rubric command

@pytest.mark.parametrize("assignment", sorted({e.assignment for e in EXERCISES}))
def test_the_rubric_command_prints_every_cell_and_what_each_known_mistake_loses(assignment,
                                                                                 capsys):
    from autograder.__main__ import main
    from autograder.hidden import references

    assert main(["rubric", assignment]) == 0
    out = capsys.readouterr().out
    exercises = registry.exercises(assignment)
    points = {c.grade_id: c.points for e in exercises for c in e.cells}
    assert all(f"| `{g}` | {p} |" in out for g, p in points.items())
    assert f"| **total** | **{sum(points.values())}** |" in out
    for exercise in exercises:
        for variant in references.variants(exercise.name):
            row = next(line for line in out.splitlines() if f"| {variant.description} |" in line)
            assert row.endswith(f"| {sum(points[g] for g in variant.loses)} |"), row
