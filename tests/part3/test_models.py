"""fusionlab.part3.models (the baselines, the classifier, the insertion wrapper, the gate
correlation) and the reference solutions of Part 3's exercises (the master's solution cells, through
``tests.part3.measure.notebook_models``): shapes, errors,
expected values, the identity of the tanh-gated block at initialisation, modality dropout's
statistics."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from fusionlab.models import UnimodalClassifier
from fusionlab.multiseed import UnstackableModelError, stack_models
from fusionlab.part3 import models as part3
from tests.part3.measure import notebook_models

_NOTEBOOK = notebook_models()
GatedMultimodalUnit = _NOTEBOOK["GatedMultimodalUnit"]
ModalityDropout = _NOTEBOOK["ModalityDropout"]
TanhGatedCrossAttention = _NOTEBOOK["TanhGatedCrossAttention"]
UngatedCrossAttention = _NOTEBOOK["UngatedCrossAttention"]
modality_dropout = _NOTEBOOK["modality_dropout"]

B, IMG_DIM, TXT_DIM, HIDDEN = 5, 32, 16, 8

UNITS = {
    "concat": lambda: part3.ConcatFusion(IMG_DIM, TXT_DIM, HIDDEN),
    "sum": lambda: part3.SumFusion(IMG_DIM, TXT_DIM, HIDDEN),
    "scalar gate": lambda: part3.ScalarGateFusion(IMG_DIM, TXT_DIM, HIDDEN),
    "film": lambda: part3.FiLMFusion(IMG_DIM, TXT_DIM, HIDDEN, mode="film"),
    "film gamma": lambda: part3.FiLMFusion(IMG_DIM, TXT_DIM, HIDDEN, mode="gamma"),
    "film beta": lambda: part3.FiLMFusion(IMG_DIM, TXT_DIM, HIDDEN, mode="beta"),
    "gmu (reference)": lambda: GatedMultimodalUnit(IMG_DIM, TXT_DIM, HIDDEN),
}


@pytest.fixture(params=list(UNITS))
def unit(request):
    torch.manual_seed(0)
    return UNITS[request.param]()


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, IMG_DIM, generator=g), torch.randn(B, TXT_DIM, generator=g)


def test_units_and_classifier_shapes(unit, inputs):
    assert unit(*inputs).shape == (B, unit.out_dim)
    model = part3.FusionClassifier(unit, num_classes=3)
    assert model(*inputs).shape == (B, 3)


@pytest.mark.parametrize(
    "img_shape, txt_shape, message",
    [
        ((B, 31), (B, TXT_DIM), r"img_feat must have shape \(B, 32\), got \(5, 31\)"),
        ((B, 1, IMG_DIM), (B, TXT_DIM), r"img_feat must have shape \(B, 32\), got \(5, 1, 32\)"),
        ((B, IMG_DIM), (B, 17), r"txt_feat must have shape \(B, 16\), got \(5, 17\)"),
        ((B, IMG_DIM), (B + 1, TXT_DIM), "share the batch size B, got 5 and 6"),
    ],
)
def test_wrong_shapes_name_the_expected_shape(unit, img_shape, txt_shape, message):
    with pytest.raises(ValueError, match=message):
        unit(torch.randn(*img_shape), torch.randn(*txt_shape))


def encodings(unit, img, txt):
    return torch.tanh(unit.img_encoder(img)), torch.tanh(unit.txt_encoder(txt))


def test_concat_and_sum_follow_their_formulas(inputs):
    torch.manual_seed(1)
    concat = part3.ConcatFusion(IMG_DIM, TXT_DIM, HIDDEN)
    total = part3.SumFusion(IMG_DIM, TXT_DIM, HIDDEN)
    h_v, h_t = encodings(concat, *inputs)
    assert torch.allclose(concat(*inputs), torch.cat([h_v, h_t], dim=-1))
    assert concat.out_dim == 2 * HIDDEN
    h_v, h_t = encodings(total, *inputs)
    assert torch.allclose(total(*inputs), h_v + h_t)


def test_scalar_gate_starts_even_and_follows_its_formula(inputs):
    torch.manual_seed(2)
    gate = part3.ScalarGateFusion(IMG_DIM, TXT_DIM, HIDDEN)
    h_v, h_t = encodings(gate, *inputs)
    assert gate.image_weight == 0.5
    assert torch.allclose(gate(*inputs), 0.5 * (h_v + h_t))
    with torch.no_grad():
        gate.gate_logit.fill_(math.log(3.0))  # sigmoid = 0.75
    assert gate.image_weight == pytest.approx(0.75)
    assert torch.allclose(gate(*inputs), 0.75 * h_v + 0.25 * h_t, atol=1e-6)


@pytest.mark.parametrize("mode", ["film", "gamma", "beta"])
def test_film_follows_its_formula(inputs, mode):
    torch.manual_seed(3)
    film = part3.FiLMFusion(IMG_DIM, TXT_DIM, HIDDEN, mode=mode)
    img, txt = inputs
    h_v = torch.tanh(film.img_encoder(img))
    gamma = 1 + film.gamma(txt) if mode != "beta" else torch.ones(B, HIDDEN)
    beta = film.beta(txt) if mode != "gamma" else torch.zeros(B, HIDDEN)
    assert torch.allclose(film(img, txt), gamma * h_v + beta, atol=1e-6)
    assert (film.gamma is None) == (mode == "beta") and (film.beta is None) == (mode == "gamma")
    assert not hasattr(film, "txt_encoder")
    with pytest.raises(ValueError, match="mode must be one of"):
        part3.FiLMFusion(mode="scale")


def test_classifier_needs_an_out_dim():
    with pytest.raises(ValueError, match="out_dim"):
        part3.FusionClassifier(nn.Linear(3, 4))


def test_units_but_the_scalar_gate_train_as_one_stacked_ensemble(inputs):
    """fit_seeds stacks the seeds of every unit and of the notebook's GMU; the scalar gate's
    0-d parameter does not stack, so it trains seed by seed (correctly, only slower)."""
    units = {**UNITS, "gmu": lambda: GatedMultimodalUnit(IMG_DIM, TXT_DIM, HIDDEN)}
    for name, make in units.items():
        models = [part3.FusionClassifier(make(), 2) for _ in range(3)]
        if name == "scalar gate":
            with pytest.raises(UnstackableModelError):
                stack_models(models, inputs)
        else:
            stack_models(models, inputs)


# ----------------------------------------------------------------------------- gate correlation


def test_gate_switch_correlation():
    switch = torch.tensor([1, 0, 1, 1, 0, 0])
    assert part3.gate_switch_correlation(switch.float() * 0.8 + 0.1, switch) == pytest.approx(1.0)
    assert part3.gate_switch_correlation(1 - switch.float(), switch) == pytest.approx(-1.0)
    gate = torch.rand(6, 4, generator=torch.Generator().manual_seed(0))
    expected = np.corrcoef(gate.mean(1).numpy(), switch.numpy())[0, 1]
    assert part3.gate_switch_correlation(gate, switch) == pytest.approx(expected)
    assert math.isnan(part3.gate_switch_correlation(torch.full((6,), 0.5), switch))
    with pytest.raises(ValueError, match=r"\(n,\) or \(n, H\)"):
        part3.gate_switch_correlation(torch.rand(5), switch)


# ----------------------------------------------------------------------------- insertion


class Identity(nn.Module):
    def forward(self, y, x):
        return y


def test_inserted_identity_block_is_the_pretrained_model():
    torch.manual_seed(4)
    pretrained = UnimodalClassifier(TXT_DIM, 32, 3, "txt")
    model = part3.InsertedFusion(pretrained, Identity(), img_dim=IMG_DIM)
    img, txt = torch.randn(B, 3, IMG_DIM), torch.randn(B, 2, TXT_DIM)
    assert torch.equal(model(img, txt), pretrained(img, txt))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"img_proj.weight", "img_proj.bias"}
    with pytest.raises(ValueError, match="text-only"):
        part3.InsertedFusion(UnimodalClassifier(IMG_DIM, 32, 3, "img"), Identity())
    with pytest.raises(ValueError, match=r"img_feat must have shape \(B, 32\)"):
        model(torch.randn(B, 31), txt)


# ----------------------------------------------------------------------------- reference: GMU


def test_gmu_follows_its_formula(inputs):
    torch.manual_seed(5)
    gmu = GatedMultimodalUnit(IMG_DIM, TXT_DIM, HIDDEN)
    img, txt = inputs
    h_v = torch.tanh(img @ gmu.img_proj.weight.T + gmu.img_proj.bias)
    h_t = torch.tanh(txt @ gmu.txt_proj.weight.T + gmu.txt_proj.bias)
    z = torch.sigmoid(torch.cat([img, txt], -1) @ gmu.gate_proj.weight.T + gmu.gate_proj.bias)
    assert torch.allclose(gmu(img, txt), z * h_v + (1 - z) * h_t, atol=1e-6)
    assert gmu.last_gate.shape == (B, HIDDEN) and torch.allclose(gmu.last_gate, z)
    # a saturated gate passes one modality through unchanged
    with torch.no_grad():
        gmu.gate_proj.weight.zero_()
        gmu.gate_proj.bias.fill_(50.0)
    assert torch.allclose(gmu(img, txt), h_v, atol=1e-6)


# ----------------------------------------------------------------------------- reference: tanh gate


@pytest.fixture
def tokens():
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, 3, 32, generator=g), torch.randn(B, 4, 32, generator=g)


def test_tanh_gated_block_is_exactly_the_identity_at_init(tokens):
    torch.manual_seed(6)
    block = TanhGatedCrossAttention(32, 4)
    y, x = tokens
    assert block.alpha.shape == (1,) and block.alpha.item() == 0.0
    assert torch.equal(block(y, x), y)


def test_a_gradient_reaches_alpha_and_only_alpha_at_init(tokens):
    torch.manual_seed(7)
    block = TanhGatedCrossAttention(32, 4)
    y, x = tokens
    block(y, x).square().sum().backward()
    assert block.alpha.grad is not None and block.alpha.grad.abs().item() > 1e-4
    # d out / d attention parameters = tanh(alpha) = 0: they start learning once alpha moves
    for name, p in block.cross_attn.named_parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0, name
    with torch.no_grad():
        block.alpha.fill_(0.5)
    expected = y + math.tanh(0.5) * block.cross_attn(y, x)
    assert torch.allclose(block(y, x), expected, atol=1e-6)


def test_ungated_block_changes_the_input_at_init(tokens):
    torch.manual_seed(8)
    y, x = tokens
    assert not torch.allclose(UngatedCrossAttention(32, 4)(y, x), y, atol=1e-3)


def test_gated_insertion_preserves_the_pretrained_model_exactly():
    torch.manual_seed(9)
    pretrained = UnimodalClassifier(TXT_DIM, 32, 3, "txt")
    img, txt = torch.randn(B, IMG_DIM), torch.randn(B, TXT_DIM)
    gated = part3.InsertedFusion(pretrained, TanhGatedCrossAttention(32, 4), IMG_DIM)
    assert torch.equal(gated(img, txt), pretrained(img, txt))
    ungated = part3.InsertedFusion(pretrained, UngatedCrossAttention(32, 4), IMG_DIM)
    assert not torch.allclose(ungated(img, txt), pretrained(img, txt), atol=1e-4)


# ----------------------------------------------------------------------------- reference: dropout


def test_modality_dropout_rate_statistics():
    n, p = 20000, 0.3
    x = torch.randn(n, 4) + 10.0
    out, dropped = modality_dropout(x, p, generator=torch.Generator().manual_seed(0))
    assert dropped.dtype == torch.bool and dropped.shape == (n,)
    assert abs(dropped.float().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    # replacement rule: dropped samples are all zeros, the others unchanged and not rescaled
    assert torch.equal(out[dropped], torch.zeros(int(dropped.sum()), 4))
    assert torch.equal(out[~dropped], x[~dropped])
    tokens = torch.randn(n, 3, 2) + 10.0
    out, dropped = modality_dropout(tokens, p, generator=torch.Generator().manual_seed(1))
    assert (out[dropped] == 0).all() and torch.equal(out[~dropped], tokens[~dropped])


def test_modality_dropout_is_seeded_and_has_the_edge_cases():
    x = torch.randn(100, 4)
    a = modality_dropout(x, 0.5, generator=torch.Generator().manual_seed(2))[1]
    b = modality_dropout(x, 0.5, generator=torch.Generator().manual_seed(2))[1]
    assert torch.equal(a, b)
    assert torch.equal(modality_dropout(x, 0.0)[0], x)
    assert torch.equal(modality_dropout(x, 1.0)[0], torch.zeros_like(x))
    with pytest.raises(ValueError, match="p must be in"):
        modality_dropout(x, 1.5)


def test_modality_dropout_wrapper_acts_only_while_training():
    torch.manual_seed(10)
    seen = []

    class Spy(nn.Module):
        def forward(self, img, txt):
            seen.append((img.clone(), txt.clone()))
            return img.sum(-1, keepdim=True)

    model = ModalityDropout(Spy(), p_img=0.0, p_txt=0.5)
    img, txt = torch.randn(4000, 3) + 5.0, torch.randn(4000, 2) + 5.0
    model.eval()(img, txt)
    assert torch.equal(seen[-1][0], img) and torch.equal(seen[-1][1], txt)
    model.train()(img, txt)
    dropped = (seen[-1][1] == 0).all(dim=1)
    assert torch.equal(seen[-1][0], img)
    assert abs(dropped.float().mean().item() - 0.5) < 5 * math.sqrt(0.25 / 4000)


# ----------------------------------------------------------------------------- measurements


@pytest.mark.slow
def test_the_measurement_script_runs_end_to_end():
    """tests/part3/measure.py at a tiny budget: every experiment runs and returns its numbers
    (the real measurements take minutes and are run by hand; see its docstring)."""
    from dataclasses import replace

    from tests.part3 import measure

    tiny = dict(seeds=[0, 1], n_train=120, n_test=60)
    one_epoch = lambda config: replace(config, epochs=1)
    switch = measure.switch(config=one_epoch(measure.SWITCH), **tiny)
    assert set(switch) >= {"concat", "sum", "scalar gate", "GMU", "FiLM", "img only"}
    assert len(switch["GMU"]["gate_corr"]) == 2
    absence = measure.absence(config=one_epoch(measure.ABSENCE), **tiny)
    assert len(absence["sum"]["per_class_text_zeroed"][0]) == 3
    missing = measure.missing(config=one_epoch(measure.MISSING), rates=(0.0, 1.0), **tiny)
    assert len(missing["late fusion"]["txt"][1]) == 2
    insertion = measure.insertion(pretrain=one_epoch(measure.PART1),
                                  config=one_epoch(measure.INSERTION), **tiny)
    assert insertion["gated"]["init_max_abs_diff"] == [0.0, 0.0]
    assert min(insertion["ungated"]["init_max_abs_diff"]) > 0
