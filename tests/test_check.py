"""fusionlab.check and the trusted verdicts: one design, the same verdicts.

The reference solutions are the Part 1 master's own solution cells (read without nbgrader).
Every known mistake (autograder.examples.PART1_VARIANTS and the mistakes below) goes through
both the self-check (evidence collected with the known weights, compared with the stored known
answers) and the grader's verdicts (evidence collected with a grading seed, compared with the
reference formulas on the exported weights): the same checks fail, for the same reason.
"""

import re

import numpy as np
import pytest
import torch
from torch import nn

from autograder import known_answers
from autograder.examples import PART1_VARIANTS, master_namespace
from autograder.hidden import part1
from fusionlab import check, evidence
from fusionlab.models import CrossAttentionLayer

SOLUTIONS = master_namespace(
    "part1_fusion_strategies", ("bidirectional_solution", "gated_solution")
)
Bidirectional = SOLUTIONS["BidirectionalCrossAttention"]  # the reference solution of TODO 1
Gated = SOLUTIONS["GatedFusionModel"]  # the reference solution of TODO 2
REQUEST = {"seed": 4242, "eval_seed": 777}


def _class(source: str):
    namespace = {"torch": torch, "nn": nn, "CrossAttentionLayer": CrossAttentionLayer}
    exec(source, namespace)
    return namespace


# ----------------------------------------------------------------------------- mistakes

def _bidir_forward(body: str) -> str:
    return ("class BidirectionalCrossAttention(Base):\n    def forward(self, img_embed, "
            "txt_embed):\n" + "".join(f"        {line}\n" for line in body.splitlines()))


BIDIR_MISTAKES = {  # name -> forward body on top of the reference's attributes
    "swapped_query_kv": (
        "txt_upd = self.norm_txt(txt_embed + self.txt_to_img(img_embed, txt_embed))\n"
        "img_upd = self.norm_img(img_embed + self.img_to_txt(txt_embed, img_embed))\n"
        "return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)"),
    "swapped_norms": (
        "txt_upd = self.norm_img(txt_embed + self.txt_to_img(txt_embed, img_embed))\n"
        "img_upd = self.norm_txt(img_embed + self.img_to_txt(img_embed, txt_embed))\n"
        "return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)"),
    "mean_of_means": (
        "txt_upd = self.norm_txt(txt_embed + self.txt_to_img(txt_embed, img_embed))\n"
        "img_upd = self.norm_img(img_embed + self.img_to_txt(img_embed, txt_embed))\n"
        "return 0.5 * (txt_upd.mean(dim=1) + img_upd.mean(dim=1))"),
    "one_direction": (
        "txt_upd = self.norm_txt(txt_embed + self.txt_to_img(txt_embed, img_embed))\n"
        "return torch.cat([txt_upd, self.norm_img(img_embed)], dim=1).mean(dim=1)"),
    "returns_none": "self.norm_txt(txt_embed + self.txt_to_img(txt_embed, img_embed))",
    "nan_for_zero_input": (
        "out = super().forward(img_embed, txt_embed)\n"
        "scale = img_embed.norm(dim=-1).mean(dim=1, keepdim=True)\n"
        "return out * scale / scale"),
    "forward_stub": "raise NotImplementedError()",
}
GATED_MISTAKES = {
    "swapped_alpha": (
        "alpha = torch.sigmoid(self.gate)\n"
        "return self.classifier((1 - alpha) * self.img_proj(img_feat) + "
        "alpha * self.txt_proj(txt_feat))"),
    "no_sigmoid": (
        "return self.classifier(self.gate * self.img_proj(img_feat) + "
        "(1 - self.gate) * self.txt_proj(txt_feat))"),
    "ignores_gate": (
        "return self.classifier(0.5 * self.img_proj(img_feat) + 0.5 * self.txt_proj(txt_feat))"),
}


def _mistake_classes():
    classes = {}
    for name, (replace, _) in PART1_VARIANTS.items():
        ((cls_name, source),) = replace.items()
        classes[name] = _class(source)[cls_name]
    for name, body in BIDIR_MISTAKES.items():
        namespace = {"torch": torch, "Base": Bidirectional}
        exec(_bidir_forward(body), namespace)
        classes[name] = namespace["BidirectionalCrossAttention"]
    for name, body in GATED_MISTAKES.items():
        namespace = {"torch": torch, "Base": Gated}
        exec("class GatedFusionModel(Base):\n    def forward(self, img_feat, txt_feat):\n"
             + "".join(f"        {line}\n" for line in body.splitlines()), namespace)
        classes[name] = namespace["GatedFusionModel"]

    class TorchAttention(Bidirectional):
        def __init__(self, dim, num_heads=4):
            super().__init__(dim, num_heads)
            self.txt_to_img = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    class MissingNorm(Bidirectional):
        def __init__(self, dim, num_heads=4):
            super().__init__(dim, num_heads)
            self.ln_img = self.norm_img
            del self.norm_img

        def forward(self, img_embed, txt_embed):
            txt_upd = self.norm_txt(txt_embed + self.txt_to_img(txt_embed, img_embed))
            img_upd = self.ln_img(img_embed + self.img_to_txt(img_embed, txt_embed))
            return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)

    class SharedLayer(Bidirectional):
        def __init__(self, dim, num_heads=4):
            super().__init__(dim, num_heads)
            self.img_to_txt = self.txt_to_img

    class DoNothingAttention(CrossAttentionLayer):
        def forward(self, query, kv, key_padding_mask=None):
            return torch.zeros_like(query)

    class FakeTypes(Bidirectional):
        """CrossAttentionLayer subclasses whose forward does nothing."""

        def __init__(self, dim, num_heads=4):
            super().__init__(dim, num_heads)
            self.txt_to_img = DoNothingAttention(dim, num_heads)
            self.img_to_txt = DoNothingAttention(dim, num_heads)

    class GateStub(nn.Module):
        def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_classes=3):
            super().__init__()
            self.img_proj = nn.Linear(img_dim, embed_dim)
            raise NotImplementedError()

    class WrongClasses(Gated):
        def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_classes=3):
            super().__init__(img_dim, txt_dim, embed_dim, 3)

    classes.update(torch_attention=TorchAttention, missing_norm=MissingNorm,
                   shared_layer=SharedLayer, fake_types=FakeTypes, gated_stub=GateStub,
                   ignores_num_classes=WrongClasses)
    return classes


MISTAKE_CLASSES = _mistake_classes()


def _is_gated(cls) -> bool:
    return issubclass(cls, Gated) or cls.__name__ in ("GatedFusionModel", "GateStub")


def _mask(message: str) -> str:
    return re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", message)


def self_check(cls) -> dict:
    run = check.gated_results if _is_gated(cls) else check.bidirectional_results
    return {r.name: r for r in run(cls)}


def trusted(cls) -> dict:
    """grade_id -> the grader's verdict, from evidence collected as the graded cells do."""
    exercise = "gated" if _is_gated(cls) else "bidirectional"
    collect = evidence.collect_gated if exercise == "gated" else evidence.collect_bidirectional
    evs = {trains: collect(cls, REQUEST["seed"], train=trains) for trains in (False, True)}
    return {gid: part1.verdict(gid, evs[trains], REQUEST)
            for gid, (ex, _, trains) in part1.GRADED.items() if ex == exercise}


def _graded_name(grade_id: str) -> str:
    return part1.GRADED[grade_id][1]


# ----------------------------------------------------------------------------- the references

@pytest.mark.bidirectional
def test_reference_bidirectional_passes_every_self_check_and_every_verdict(capsys):
    results = check.bidirectional_results(Bidirectional)
    assert [r.name for r in results] == list(check.BIDIRECTIONAL_CHECKS)
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    verdicts = trusted(Bidirectional)
    assert all(v.passed for v in verdicts.values()), verdicts


@pytest.mark.gated
def test_reference_gated_passes_every_self_check_and_every_verdict():
    results = check.gated_results(Gated)
    assert [r.name for r in results] == list(check.GATED_CHECKS)
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    assert "0.500" in {r.name: r for r in results}["gate"].message
    verdicts = trusted(Gated)
    assert all(v.passed for v in verdicts.values()), verdicts


# ----------------------------------------------------------------------------- parity

@pytest.mark.parametrize("name", sorted(MISTAKE_CLASSES))
def test_every_known_mistake_gets_the_same_verdicts_from_self_check_and_grader(name):
    cls = MISTAKE_CLASSES[name]
    mine = self_check(cls)
    graded = trusted(cls)
    failed_self = {n for n, r in mine.items() if not r.passed and n != "implemented"}
    failed_graded = {_graded_name(g) for g, v in graded.items() if not v.passed}
    shared = set(mine) & {_graded_name(g) for g in graded}
    assert failed_self & shared == failed_graded & shared, (mine, graded)
    assert failed_self or not mine["implemented"].passed, f"{name} passes every self-check"
    for grade_id, verdict in graded.items():
        check_name = _graded_name(grade_id)
        if check_name in mine and not verdict.passed:
            assert _mask(verdict.message) == _mask(mine[check_name].message), grade_id
            assert verdict.skipped == mine[check_name].skipped
    if name in PART1_VARIANTS:  # the cells it is documented to fail, and only those
        expected = set(PART1_VARIANTS[name][1])
        assert {g for g, v in graded.items() if not v.passed} == expected


@pytest.mark.parametrize(("name", "check_name", "hint"), [
    ("no_residual", "equivalence", "residual connection is missing"),
    ("no_norm", "equivalence", "LayerNorm is missing"),
    ("swapped_directions", "equivalence", "directions are swapped"),
    ("swapped_query_kv", "equivalence", "must match the size of tensor"),
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
    ("missing_norm", "attributes", "missing attribute `norm_img`"),
    ("torch_attention", "attributes", "`txt_to_img` does not have the weights"),
    ("shared_layer", "attributes", "the same layer"),
    ("fake_types", "attributes", "does not compute what CrossAttentionLayer"),
    ("one_direction", "gradients", "img_to_txt"),
    ("nan_for_zero_input", "no_nan", "all-zero inputs"),
    ("ignores_num_classes", "shapes", "num_classes=2"),
])
def test_each_mistake_is_named_by_its_true_reason(name, check_name, hint):
    result = self_check(MISTAKE_CLASSES[name])[check_name]
    assert not result.passed and hint in result.message, result


def test_linear_head_loses_the_accuracy_points_with_its_true_reason():
    verdict = trusted(MISTAKE_CLASSES["linear_head"])["gated_accuracy"]
    assert not verdict.passed
    assert "single nn.Linear(32, 3)" in verdict.message and "cannot learn" in verdict.message


def test_wrong_concatenation_axis_keeps_the_gradient_and_nan_points():
    graded = trusted(MISTAKE_CLASSES["concat_feature_axis"])
    assert graded["bidir_gradients"].passed and graded["bidir_no_nan"].passed


@pytest.mark.parametrize("stub", ["forward_stub", "gated_stub"])
def test_a_stub_is_not_implemented_yet_and_the_rest_is_skipped(stub, capsys):
    results = list(self_check(MISTAKE_CLASSES[stub]).values())
    assert (results[0].name, results[0].passed) == ("implemented", False)
    assert "not implemented yet" in results[0].message or "NotImplementedError" in \
        results[0].message
    assert all(r.skipped and r.word == "SKIP" for r in results[1:]
               if r.name not in ("attributes", "gate"))  # these need only the built module
    graded = trusted(MISTAKE_CLASSES[stub])
    # a finished __init__ with a forward stub still earns the attributes
    assert {g for g, v in graded.items() if v.passed} == (
        {"bidir_attributes"} if stub == "forward_stub" else set())


# ----------------------------------------------------------------------------- the design

def test_the_package_offers_no_implementation_of_a_todo():
    assert not [name for name in dir(check) if name.startswith("reference")]
    assert not hasattr(evidence, "reference_bidirectional")


def test_stored_known_answers_equal_a_fresh_computation():
    stored = check.known_answers()
    fresh = known_answers.compute()
    assert set(stored) == set(fresh)
    for key, value in fresh.items():
        np.testing.assert_allclose(stored[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_evidence_is_plain_data(tmp_path):
    ev = evidence.collect_gated(Gated, 3, train=True)
    path = evidence.save(ev, tmp_path / "e.npz")
    loaded = evidence.load(path)  # allow_pickle=False
    assert set(loaded) == set(ev)
    assert all(v.dtype != object for v in loaded.values())
    assert any(k.startswith("trained/") for k in loaded)


def test_an_error_in_one_check_fails_that_check_only():
    ev = evidence.collect_bidirectional(Bidirectional, 1)
    ev["out/nan0"] = np.array("not an array of numbers")
    facts = part1.bidirectional_facts(ev, 1)
    results = {r.name: r for r in check.run(check.BIDIRECTIONAL, check.BIDIRECTIONAL_CHECKS, ev,
                                            facts)}
    assert not results["no_nan"].passed and not results["no_nan"].skipped
    assert all(r.passed for n, r in results.items() if n != "no_nan")


def test_grader_inputs_come_from_the_request_seed():
    a, b = evidence.bidirectional_inputs(1), evidence.bidirectional_inputs(2)
    assert not torch.equal(a["eq/img"], b["eq/img"])
    assert torch.equal(a["eq/img"], evidence.bidirectional_inputs(1)["eq/img"])


@pytest.mark.parametrize("cls", [Bidirectional, Gated])
def test_checks_leave_the_global_random_state_untouched(cls):
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    (check.gated_results if cls is Gated else check.bidirectional_results)(cls)
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

    for run in (check.bidirectional_results, check.gated_results):
        assert not all(r.passed for r in run(Broken))
    assert not all(r.passed for r in check.bidirectional_results(lambda *a, **k: 42))


def test_printed_verdict_has_a_word_per_line_and_no_return_value(capsys):
    assert check.gated(Gated) is None  # a notebook cell shows no stray True/False
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Checking GatedFusionModel"
    assert len(lines) == 2 + len(check.GATED_CHECKS)
    assert all(line.lstrip().startswith("PASS ✅ ") for line in lines[1:-1])
    assert lines[-1] == f"All {len(check.GATED_CHECKS)} checks passed."
    check.bidirectional(MISTAKE_CLASSES["forward_stub"])
    out = capsys.readouterr().out
    assert "FAIL ❌ implemented" in out and "SKIP ➖ shapes" in out and "Traceback" not in out
