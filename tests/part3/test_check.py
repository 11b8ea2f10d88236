"""Part 3's own behaviour, beyond what tests/grading/test_exercises.py asserts for every exercise
(the solution passes, each known mistake loses exactly its own cells, the self-check agrees with
the grader):

- hostile TODO cells, as in issue 19's Part 3 rows: a block that reports alpha 0 through its
  state, a forged gradient for a detached alpha, a refit of the dropout model from another cell;
- the accuracy cells: neither the labels nor the switch M enter the clean room, the GMU's gate
  must move while training and follow M either way round (|corr(z, M)|), a unit without
  last_gate is judged on its accuracy alone, a gate stuck at one modality fails (slow), a
  re-run trains the same predictions;
- the reasons of the walkthrough mistakes name what is wrong, in the grader and the self-check;
"""

from __future__ import annotations

import numpy as np
import pytest
from nbformat.v4 import new_code_cell

from autograder import cleanroom
from autograder.authoring import thresholds, trial
from autograder.hidden import references
from autograder.hidden.part3 import block_src, gmu_src
from fusionlab.grading import registry
from fusionlab.grading.seeds import Seeds
from fusionlab.grading.toolkit import isolated, load
from fusionlab.part3 import exercises as part3

ASSIGNMENT = part3.ASSIGNMENT


def lost(verdicts: dict) -> set[str]:
    return {grade_id for grade_id, verdict in verdicts.items() if not verdict.passed}


def variant(name: str):
    (found,) = [v for v in references.variants() if v.name == name]
    return found


# ----------------------------------------------------------------------------- hostile TODO cells

ALPHA_REPORTED_ZERO = block_src(alpha="nn.Parameter(torch.ones(1))") + '''
    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        state["alpha"] = torch.zeros(1)
        return state

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "alpha"] = torch.zeros(1)
'''

FORGED_ALPHA_GRADIENT = block_src(
    out="self._forged(y + torch.tanh(self.alpha.detach()) * self.cross_attn(y, x))") + '''
    def _forged(self, out):
        if out.requires_grad:
            out.register_hook(self._forge)
        return out

    def _forge(self, grad):
        self.alpha.grad = torch.ones_like(self.alpha)
        return grad
'''


@pytest.mark.exercise("tanh_gated")
def test_alpha_at_one_reported_as_zero_by_its_state_still_loses_its_cells():
    """The initial alpha is read from the block's storage as well as through
    nn.Module.state_dict, and the output at initialisation is measured: a class that reports
    alpha 0 gains nothing."""
    verdicts = trial.verdicts(ASSIGNMENT, {"TanhGatedCrossAttention": ALPHA_REPORTED_ZERO})
    assert {"block_attributes", "block_visible_identity"} <= lost(verdicts)
    assert "alpha starts at 1" in verdicts["block_attributes"].message


@pytest.mark.exercise("tanh_gated")
def test_a_forged_gradient_for_a_detached_alpha_is_compared_with_the_formulas():
    verdicts = trial.verdicts(ASSIGNMENT, {"TanhGatedCrossAttention": FORGED_ALPHA_GRADIENT})
    assert lost(verdicts) == {"block_alpha_gradient"}, {g: verdicts[g].message
                                                        for g in lost(verdicts)}


REFIT_IN_ANOTHER_CELL = '''\
import fusionlab.part3.exercises as exercises


def _forward(self, img_feat, txt_feat):
    if self.training:
        keep = (torch.rand(txt_feat.shape[0]) >= 0.5).float()[:, None]
        txt_feat = txt_feat * keep
    return self.model(img_feat, txt_feat)


exercises.TextDropout.forward = _forward
'''


@pytest.mark.exercise("modality_dropout")
def test_a_dropout_that_never_drops_gains_nothing_from_a_patch_in_another_cell():
    """Only the TODO cells run in the clean room: a cell after them that patches the grader's
    training (here: to drop the text itself) is not there."""
    never = variant("dropout_never_drops")
    saved = part3.TextDropout.forward
    try:
        verdicts = trial.verdicts(ASSIGNMENT, never.replace, edit=lambda nb: nb.cells.append(
            new_code_cell(REFIT_IN_ANOTHER_CELL)))
    finally:
        part3.TextDropout.forward = saved
    assert lost(verdicts) == set(never.loses)


# ----------------------------------------------------------------------------- accuracy cells

@pytest.mark.exercise("gmu", "modality_dropout")
def test_the_clean_room_gets_inputs_without_labels_or_switch(tmp_path):
    _, release = trial.released(ASSIGNMENT)
    exercises = cleanroom.exercises_of(release)
    held = cleanroom.write_job(tmp_path, release, release, exercises, trial.SEEDS,
                               cell_timeout=cleanroom.DEFAULT_CELL_TIMEOUT_S)
    inputs = load(tmp_path / "inputs.npz")
    assert sorted(inputs) == ["gmu/img", "gmu/txt", "modality_dropout/img",
                              "modality_dropout/txt"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["inputs.npz", "job.json"]
    # the datasets' labels follow the sample index (i mod classes): the inputs are shuffled
    labels = held["gmu"]["labels"]
    assert not np.array_equal(labels, np.arange(len(labels)) % 2)
    assert set(np.unique(held["gmu"]["switch"])) == {0, 1}


def _gmu_verdict(**measured):
    check = registry.exercise("gmu").checks["accuracy"]
    return check({}, {"accuracy": measured})


@pytest.mark.exercise("gmu")
def test_the_gmu_gate_must_move_and_follow_the_switch_either_way_round():
    high = part3.CONFIG.gmu_accuracy_threshold + 0.05
    assert _gmu_verdict(accuracy=high, correlation=-0.8).passed  # weights the text: still a gate
    stuck = _gmu_verdict(accuracy=high, correlation=float("nan"))  # a constant gate
    assert not stuck.passed and "does not follow the switch" in stuck.message
    weak = _gmu_verdict(accuracy=high, correlation=0.1, gate_change=0.2)
    assert not weak.passed and "does the gate train" in weak.message
    still = _gmu_verdict(accuracy=high, correlation=0.7, gate_change=0.0)  # detached, lucky
    assert not still.passed and "did not move" in still.message
    low = _gmu_verdict(accuracy=0.5, correlation=0.9)
    assert not low.passed and "below the required" in low.message


@pytest.mark.exercise("gmu")
def test_a_gmu_without_last_gate_is_judged_on_its_accuracy_alone():
    """Its last_gate cell already costs it: the accuracy cell does not charge it again."""
    missing = variant("gmu_no_last_gate")
    verdicts = trial.verdicts(ASSIGNMENT, missing.replace)
    assert lost(verdicts) == {"gmu_last_gate"}
    assert "not measured" in verdicts["gmu_accuracy"].message


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.exercise(n))
                                  for n in ("gmu", "modality_dropout")])
def test_a_training_run_is_reproducible(name):
    """A re-grade with the same seeds trains the same model: the same predictions."""
    exercise, ref = registry.exercise(name), references.reference(name)
    target = trial.namespace(exercise)[exercise.target]
    seeds = Seeds(inputs=7, evaluation=8)
    inputs, _ = ref.evaluation.data(seeds.evaluation)
    runs = []
    for _ in range(2):
        with isolated(seeds.inputs):
            runs.append({k: v.numpy() for k, v in exercise.train(target, seeds.inputs,
                                                                 inputs).items()})
    assert runs[0].keys() == runs[1].keys() and "logits" in runs[0]
    for key in runs[0]:
        assert np.array_equal(runs[0][key], runs[1][key]), key


@pytest.mark.slow
@pytest.mark.exercise("gmu")
@pytest.mark.parametrize("bias", [40.0, -40.0])
def test_a_gate_stuck_at_one_modality_fails_the_accuracy_cell(bias):
    """A saturated gate gets no gradient and never moves: the model answers from one modality,
    right on its half of the samples and guessing on the other (not a registered mistake: the
    self-check loads its known weights over the stuck bias)."""
    gmu = registry.exercise("gmu")
    stuck = gmu_src(init=f"\n        nn.init.constant_(self.gate_proj.bias, {bias})")
    for seed in (3, 4):
        numbers, passed = thresholds.measure_once(gmu, stuck, seed)
        assert not passed and numbers["accuracy"] < part3.CONFIG.gmu_accuracy_threshold
        assert numbers.get("gate_change", 0.0) < part3.CONFIG.gmu_gate_change


# ----------------------------------------------------------------------------- true reasons

@pytest.mark.parametrize("mistake, grade_id, says", [pytest.param(
    variant(name), grade_id, says, id=f"{name}-{grade_id}") for name, grade_id, says in [
    ("dropout_reversed", "dropout_rule", "comparison is reversed"),
    ("dropout_reversed", "dropout_rate", "comparison reversed"),
    ("dropout_shortcut", "dropout_rule", "generator you are given"),
    ("dropout_in_place", "dropout_replacement", "in place"),
    ("gmu_swapped_concat", "gmu_equivalence", "[x_t; x_v]"),
    ("gmu_image_only_gate", "gmu_attributes", "`gate_proj` is nn.Linear(32, 32)"),
    ("gmu_gate_detached", "gmu_accuracy", "is z detached"),
    ("block_no_tanh", "block_equivalence", "the tanh is missing"),
    ("block_sigmoid", "block_equivalence", "sigmoid(alpha)"),
    ("block_alpha_detached", "block_alpha_gradient", "detached"),
]])
def test_the_reason_names_the_mistake_in_the_grader_and_the_self_check(mistake, grade_id, says):
    exercise = registry.exercise(mistake.exercise)
    verdict = trial.verdicts(ASSIGNMENT, mistake.replace)[grade_id]
    assert not verdict.passed and says in verdict.message, verdict.message
    check = exercise.cell(grade_id).check
    if check in exercise.self_checks:
        hint = trial.self_check(exercise, mistake.replace[exercise.target])[check]
        assert not hint.passed and says in hint.message, hint.message
