"""Part 1's exercises beyond the registry-wide tests (tests/grading/test_exercises.py): the
self-check's printed form, robustness against garbage, and the reasons that name each mistake."""

import numpy as np
import pytest
import torch
from torch import nn

from autograder.authoring import trial
from autograder.hidden import references
from fusionlab import check
from fusionlab.grading import registry
from fusionlab.grading.results import run
from fusionlab.part1 import exercises as part1

BIDIRECTIONAL = registry.exercise("bidirectional")
GATED = registry.exercise("gated")
SOLUTIONS = {e.name: trial.namespace(e)[e.target] for e in (BIDIRECTIONAL, GATED)}


def _variant(name):
    return next(v for v in references.variants() if v.name == name)


def _self_check(name):
    variant = _variant(name)
    exercise = registry.exercise(variant.exercise)
    return trial.self_check(exercise, variant.replace[exercise.target])


@pytest.mark.parametrize(("name", "check_name", "hint"), [
    ("no_residual", "equivalence", "residual connection is missing"),
    ("no_norm", "equivalence", "LayerNorm is missing"),
    ("swapped_directions", "equivalence", "directions are swapped"),
    ("swapped_query_kv", "shapes", "must match the size of tensor"),
    ("swapped_norms", "equivalence", "norm_txt and norm_img are swapped"),
    ("mean_of_means", "equivalence", "averages the two modalities' means"),
    ("swapped_alpha", "equivalence", "wrong modality"),
    ("no_sigmoid", "equivalence", "sigmoid is missing"),
    ("ignores_gate", "equivalence", "ignores the gate"),
    ("no_pooling", "shapes", "not mean-pooled"),
    ("concat_feature_axis", "shapes", "concatenate along the token axis (dim=1)"),
    ("returns_none", "shapes", "forget `return`"),
    ("gate_at_one", "gate", "sigmoid(gate) = 0.731"),
    ("gate_not_parameter", "gate", "not an nn.Parameter"),
    ("linear_head", "attributes", "single nn.Linear(32, 3)"),
    ("torch_attention", "attributes", "`txt_to_img` does not have the weights"),
    ("shared_layer", "attributes", "the same layer"),
    ("shared_layer", "gradients", "the same layer as"),
    ("fake_types", "attributes", "does not compute what CrossAttentionLayer"),
    ("one_direction", "gradients", "img_to_txt"),
    ("output_detached", "gradients", ".detach()"),
    ("one_side_detached", "gradients", "img_to_txt"),
    ("alpha_detached", "gate_gradient", ".detach()"),
    ("nan_for_zero_input", "no_nan", "all-zero inputs"),
])
def test_each_mistake_is_named_by_its_true_reason(name, check_name, hint):
    result = _self_check(name)[check_name]
    assert not result.passed and hint in result.message, result


def test_the_linear_head_loses_the_accuracy_cell_for_what_it_reached():
    verdict = trial.verdicts(part1.ASSIGNMENT, _variant("linear_head").replace)["gated_accuracy"]
    assert not verdict.passed and "reached 0." in verdict.message and "below the required" \
        in verdict.message


def test_a_module_without_num_classes_is_named_by_the_shape_it_gave():
    source = trial.solution_source(GATED).replace(
        "def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_classes=3):",
        "def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_classes=3):\n"
        "        num_classes = 3")
    result = trial.self_check(GATED, source)["shapes"]
    assert not result.passed and "num_classes=2" in result.message


def test_an_error_in_one_check_fails_that_check_only():
    ev = part1.collect_bidirectional(SOLUTIONS["bidirectional"], 1)
    ev["out/nan0"] = np.array("not an array of numbers")
    facts = references.reference("bidirectional").facts(ev, 1)
    results = {r.name: r for r in run(BIDIRECTIONAL.checks, BIDIRECTIONAL.self_checks, ev,
                                      facts)}
    assert not results["no_nan"].passed and not results["no_nan"].skipped
    assert all(r.passed for n, r in results.items() if n != "no_nan")


@pytest.mark.parametrize("exercise", [BIDIRECTIONAL, GATED], ids=lambda e: e.name)
def test_checks_leave_the_global_random_state_untouched(exercise):
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    exercise.results(SOLUTIONS[exercise.name])
    assert torch.equal(torch.random.get_rng_state(), before)


def test_checks_never_raise_on_garbage():
    class Broken(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()

        @property
        def txt_to_img(self):
            raise RuntimeError("boom")

        def forward(self, *args):
            return torch.zeros(2, 32)

    for exercise in (BIDIRECTIONAL, GATED):
        assert not all(r.passed for r in exercise.results(Broken))
        assert not all(r.passed for r in exercise.results(lambda *a, **k: 42))


def test_printed_verdict_has_a_word_per_check_and_no_return_value(capsys):
    assert check.gated(SOLUTIONS["gated"]) is None  # a notebook cell shows no stray True/False
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Checking GatedFusionModel"
    verdicts = [line for line in lines[1:-1] if not line.startswith("      ")]
    assert len(verdicts) == len(GATED.self_checks)
    assert all(line.startswith("  PASS ✅ ") for line in verdicts)
    assert all(len(line) <= 100 for line in lines)  # wrapped at word boundaries
    assert lines[-1] == f"All {len(GATED.self_checks)} checks passed."
    source = trial.solution_source(BIDIRECTIONAL).replace(
        "        txt_upd = self.norm_txt", "        raise NotImplementedError()\n"
        "        txt_upd = self.norm_txt")
    check.bidirectional(trial.namespace(BIDIRECTIONAL, source)[BIDIRECTIONAL.target])
    out = capsys.readouterr().out
    assert "FAIL ❌ implemented" in out and "SKIP ➖ shapes" in out and "Traceback" not in out


