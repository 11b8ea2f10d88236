"""fusionlab.check: each typical mistake is flagged by the right check, with a helpful message.

The reference solutions are the Part 1 master's own solution cells; every broken variant below
changes one thing, and the tests assert which checks fail and which still pass.
"""

import pytest
import torch
from torch import nn

from autograder.examples import master_namespace
from fusionlab import check
from fusionlab.models import CrossAttentionLayer

SOLUTIONS = master_namespace(
    "part1_fusion_strategies", ("bidirectional_solution", "gated_solution")
)

# ----------------------------------------------------------------------------- bidirectional


Bidirectional = SOLUTIONS["BidirectionalCrossAttention"]  # the reference solution of TODO 1


class BidirectionalStub(nn.Module):
    """What nbgrader leaves in the student notebook."""

    def __init__(self, dim, num_heads=4):
        super().__init__()
        raise NotImplementedError()

    def forward(self, img_embed, txt_embed):
        raise NotImplementedError()


class BidirectionalForwardStub(Bidirectional):
    def forward(self, img_embed, txt_embed):
        raise NotImplementedError()


class BidirectionalNoPooling(Bidirectional):
    def forward(self, img_embed, txt_embed):
        txt_upd = self.norm_txt(txt_embed + self.txt_to_img(txt_embed, img_embed))
        img_upd = self.norm_img(img_embed + self.img_to_txt(img_embed, txt_embed))
        return torch.cat([txt_upd, img_upd], dim=1)


class BidirectionalReturnsNone(Bidirectional):
    def forward(self, img_embed, txt_embed):
        self.norm_txt(txt_embed + self.txt_to_img(txt_embed, img_embed))


class BidirectionalNoResidual(Bidirectional):
    def forward(self, img_embed, txt_embed):
        txt_upd = self.norm_txt(self.txt_to_img(txt_embed, img_embed))
        img_upd = self.norm_img(self.img_to_txt(img_embed, txt_embed))
        return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)


class BidirectionalNoNorm(Bidirectional):
    def forward(self, img_embed, txt_embed):
        txt_upd = txt_embed + self.txt_to_img(txt_embed, img_embed)
        img_upd = img_embed + self.img_to_txt(img_embed, txt_embed)
        return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)


class BidirectionalSwapped(Bidirectional):
    def forward(self, img_embed, txt_embed):
        txt_upd = self.norm_txt(txt_embed + self.img_to_txt(txt_embed, img_embed))
        img_upd = self.norm_img(img_embed + self.txt_to_img(img_embed, txt_embed))
        return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)


class BidirectionalOneDirection(Bidirectional):
    """Only text reads the image: img_to_txt is never used."""

    def forward(self, img_embed, txt_embed):
        txt_upd = self.norm_txt(txt_embed + self.txt_to_img(txt_embed, img_embed))
        return torch.cat([txt_upd, self.norm_img(img_embed)], dim=1).mean(dim=1)


class BidirectionalMissingNorm(nn.Module):
    """Names one LayerNorm differently from the interface."""

    def __init__(self, dim, num_heads=4):
        super().__init__()
        self.txt_to_img = CrossAttentionLayer(dim, num_heads)
        self.img_to_txt = CrossAttentionLayer(dim, num_heads)
        self.norm_txt = nn.LayerNorm(dim)
        self.ln_img = nn.LayerNorm(dim)

    def forward(self, img_embed, txt_embed):
        txt_upd = self.norm_txt(txt_embed + self.txt_to_img(txt_embed, img_embed))
        img_upd = self.ln_img(img_embed + self.img_to_txt(img_embed, txt_embed))
        return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)


class BidirectionalTorchAttention(Bidirectional):
    """Uses nn.MultiheadAttention instead of the course's CrossAttentionLayer."""

    def __init__(self, dim, num_heads=4):
        super().__init__(dim, num_heads)
        self.txt_to_img = nn.MultiheadAttention(dim, num_heads, batch_first=True)


class BidirectionalNaN(Bidirectional):
    """Rescales by the input's norm: NaN for an all-zero input."""

    def forward(self, img_embed, txt_embed):
        out = super().forward(img_embed, txt_embed)
        scale = img_embed.norm(dim=-1).mean(dim=1, keepdim=True)  # (B, 1)
        return out * scale / scale


def by_name(results):
    return {r.name: r for r in results}


def failing(results):
    return {r.name for r in results if not r.passed and not r.skipped}


@pytest.mark.bidirectional
def test_reference_bidirectional_passes_every_check():
    results = check.bidirectional_results(Bidirectional)
    assert [r.name for r in results] == list(check.BIDIRECTIONAL_CHECKS)
    assert all(r.passed for r in results), [r for r in results if not r.passed]


@pytest.mark.bidirectional
def test_reference_bidirectional_matches_its_own_module():
    torch.manual_seed(0)
    module = Bidirectional(8, num_heads=2)
    img, txt = torch.randn(3, 4, 8), torch.randn(3, 2, 8)
    expected = module(img, txt)
    assert torch.equal(check.reference_bidirectional(module, img, txt), expected)
    assert expected.shape == (3, 8)


@pytest.mark.bidirectional
@pytest.mark.parametrize("stub", [BidirectionalStub, BidirectionalForwardStub])
def test_bidirectional_stub_is_not_implemented_yet_without_raising(stub, capsys):
    results = check.bidirectional_results(stub)
    first = results[0]
    assert (first.name, first.passed) == ("implemented", False)
    assert "not implemented yet" in first.message
    assert all(r.skipped and not r.passed for r in results[1:])
    assert check.bidirectional(stub) is False
    out = capsys.readouterr().out
    assert "not implemented yet" in out and "Traceback" not in out


@pytest.mark.bidirectional
def test_bidirectional_without_pooling_fails_shapes_with_the_shapes_in_the_message():
    results = by_name(check.bidirectional_results(BidirectionalNoPooling))
    assert not results["shapes"].passed
    assert "expected output shape (2, 32)" in results["shapes"].message
    assert "got (2, 2, 32)" in results["shapes"].message
    assert "mean-pooled" in results["shapes"].message
    assert results["attributes"].passed


@pytest.mark.bidirectional
def test_bidirectional_returning_none_hints_at_return():
    results = by_name(check.bidirectional_results(BidirectionalReturnsNone))
    assert not results["shapes"].passed
    assert "return" in results["shapes"].message


@pytest.mark.bidirectional
@pytest.mark.parametrize(
    ("variant", "hint", "also_failing"),
    [
        (BidirectionalNoResidual, "residual", set()),
        # the unused LayerNorms get no gradient either
        (BidirectionalNoNorm, "LayerNorm", {"gradients"}),
        (BidirectionalSwapped, "directions are swapped", set()),
    ],
)
def test_bidirectional_formula_mistakes_fail_equivalence_with_a_hint(variant, hint, also_failing):
    results = check.bidirectional_results(variant)
    assert failing(results) == {"equivalence"} | also_failing
    assert hint in by_name(results)["equivalence"].message


@pytest.mark.bidirectional
def test_bidirectional_unused_direction_fails_equivalence_and_gradients():
    results = check.bidirectional_results(BidirectionalOneDirection)
    assert failing(results) == {"equivalence", "gradients"}
    assert "img_to_txt" in by_name(results)["gradients"].message


@pytest.mark.bidirectional
def test_bidirectional_missing_attribute_is_named():
    results = by_name(check.bidirectional_results(BidirectionalMissingNorm))
    assert not results["attributes"].passed
    assert "norm_img" in results["attributes"].message
    assert results["equivalence"].skipped


@pytest.mark.bidirectional
def test_bidirectional_wrong_attention_class_is_named():
    results = by_name(check.bidirectional_results(BidirectionalTorchAttention))
    assert not results["implemented"].passed or not results["attributes"].passed


@pytest.mark.bidirectional
def test_bidirectional_nan_output_fails_no_nan():
    results = check.bidirectional_results(BidirectionalNaN)
    assert "no_nan" in failing(results)


# ----------------------------------------------------------------------------- gated


Gated = SOLUTIONS["GatedFusionModel"]  # the reference solution of TODO 2


class GatedStub(nn.Module):
    """What nbgrader leaves: the given projections, then the stub."""

    def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_classes=3):
        super().__init__()
        self.img_proj = nn.Linear(img_dim, embed_dim)
        self.txt_proj = nn.Linear(txt_dim, embed_dim)
        raise NotImplementedError()

    def forward(self, img_feat, txt_feat):
        raise NotImplementedError()


class GatedGateAtOne(Gated):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = nn.Parameter(torch.ones(1))


class GatedGateTensor(Gated):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.gate
        self.gate = torch.zeros(1)


class GatedSwappedAlpha(Gated):
    def forward(self, img_feat, txt_feat):
        alpha = torch.sigmoid(self.gate)
        z = (1 - alpha) * self.img_proj(img_feat) + alpha * self.txt_proj(txt_feat)
        return self.classifier(z)


class GatedNoSigmoid(Gated):
    def forward(self, img_feat, txt_feat):
        z = self.gate * self.img_proj(img_feat) + (1 - self.gate) * self.txt_proj(txt_feat)
        return self.classifier(z)


class GatedWrongClasses(Gated):
    """Ignores num_classes."""

    def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_classes=3):
        super().__init__(img_dim, txt_dim, embed_dim, 3)


class GatedMissingClassifier(Gated):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.head = self.classifier
        del self.classifier

    def forward(self, img_feat, txt_feat):
        alpha = torch.sigmoid(self.gate)
        return self.head(alpha * self.img_proj(img_feat) + (1 - alpha) * self.txt_proj(txt_feat))


@pytest.mark.gated
def test_reference_gated_passes_every_check():
    results = check.gated_results(Gated)
    assert [r.name for r in results] == list(check.GATED_CHECKS)
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    assert "0.500" in by_name(results)["gate"].message


@pytest.mark.gated
def test_reference_gated_matches_its_own_model():
    torch.manual_seed(0)
    model = Gated()
    with torch.no_grad():
        model.gate.fill_(0.8)
    img, txt = torch.randn(4, 32), torch.randn(4, 16)
    assert torch.equal(check.reference_gated(model, img, txt), model(img, txt))


@pytest.mark.gated
def test_gated_stub_is_not_implemented_yet_without_raising(capsys):
    results = check.gated_results(GatedStub)
    assert (results[0].name, results[0].passed) == ("implemented", False)
    assert "not implemented yet" in results[0].message
    assert all(r.skipped for r in results[1:])
    assert check.gated(GatedStub) is False
    assert "Traceback" not in capsys.readouterr().out


@pytest.mark.gated
def test_gated_gate_initialised_at_one_fails_gate_with_its_value():
    results = check.gated_results(GatedGateAtOne)
    assert failing(results) == {"gate"}
    message = by_name(results)["gate"].message
    assert "sigmoid(gate) = 0.731" in message and "torch.zeros(1)" in message


@pytest.mark.gated
def test_gated_gate_not_a_parameter_fails_gate_and_gradient():
    results = check.gated_results(GatedGateTensor)
    assert failing(results) == {"gate", "gate_gradient"}
    assert "not an nn.Parameter" in by_name(results)["gate"].message


@pytest.mark.gated
@pytest.mark.parametrize(
    ("variant", "hint"),
    [(GatedSwappedAlpha, "wrong modality"), (GatedNoSigmoid, "sigmoid is missing")],
)
def test_gated_formula_mistakes_fail_equivalence_with_a_hint(variant, hint):
    results = check.gated_results(variant)
    assert failing(results) == {"equivalence"}
    assert hint in by_name(results)["equivalence"].message


@pytest.mark.gated
def test_gated_ignoring_num_classes_fails_shapes():
    results = by_name(check.gated_results(GatedWrongClasses))
    assert not results["shapes"].passed
    message = results["shapes"].message
    assert "num_classes=2" in message and "got (4, 3)" in message


@pytest.mark.gated
def test_gated_missing_classifier_is_named():
    results = by_name(check.gated_results(GatedMissingClassifier))
    assert not results["attributes"].passed
    assert "classifier" in results["attributes"].message


# ----------------------------------------------------------------------------- both


@pytest.mark.parametrize(
    ("run", "cls"), [(check.bidirectional_results, Bidirectional), (check.gated_results, Gated)]
)
def test_checks_leave_the_global_random_state_untouched(run, cls):
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    run(cls)
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
        results = run(Broken)
        assert not all(r.passed for r in results)
    assert not all(r.passed for r in check.bidirectional_results(lambda *a, **k: 42))


def test_printed_verdict_has_one_line_per_check(capsys):
    assert check.gated(Gated) is True
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Checking GatedFusionModel"
    assert len(lines) == 2 + len(check.GATED_CHECKS)
    assert lines[-1] == f"All {len(check.GATED_CHECKS)} checks passed."
