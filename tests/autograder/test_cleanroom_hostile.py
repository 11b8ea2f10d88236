"""Hostile TODO cells of Parts 2 and 3 (issue 19's table), measured as the grader measures
them: in the sandboxed clean room, on the tests' grading seeds, decided by the trusted process.

Each pairs a real mistake with a trick that used to earn its points: the trick now sits inside
the TODO cell itself, the one place whose code the clean room runs, and the submission still
loses exactly the cells of its mistake. (Tricks in other cells never run there: Part 1's
end-to-end batch, ``tests/autograder/test_grading.py``, shows that through real nbgrader.)
"""

from __future__ import annotations

import pytest

from autograder import cleanroom
from autograder import verdicts as trusted
from autograder.authoring import trial
from autograder.authoring.examples import submission
from autograder.hidden import references
from autograder.hidden.part2.mistakes import BORROWED_ATTENTION, attention_src
from autograder.hidden.part3 import block_src

pytestmark = pytest.mark.grading


def _loses(*names: str) -> set[str]:
    known = {v.name: v for v in references.variants()}
    return {cell for name in names for cell in known[name].loses}


# Part 2: no scaling and the mask ignored, but a forward that recognises the self-check's
# public inputs (drawn from the public seed) and answers them as a masked layer would.
PUBLIC_INPUTS_ONLY = attention_src().replace("class MaskedMultiHeadAttention", "class _Honest") \
    + "\n\n" + attention_src(scores="q @ k.transpose(-2, -1)",
                             pad="torch.zeros_like(key_padding_mask)[:, None, None, :]") + '''

from fusionlab.grading.seeds import SELF_CHECK_SEED
from fusionlab.part2.exercises import attention_inputs

_PUBLIC = [t for t in attention_inputs(SELF_CHECK_SEED).values() if torch.is_tensor(t)]
_wrong = MaskedMultiHeadAttention.forward


def _forward(self, query, kv, key_padding_mask=None):
    if any(t.shape == query.shape and torch.equal(t, query) for t in _PUBLIC):
        return _Honest.forward(self, query, kv, key_padding_mask)
    return _wrong(self, query, kv, key_padding_mask)


MaskedMultiHeadAttention.forward = _forward
'''

# Part 2: fusionlab's layer subclassed, with the names a grader could read edited
RENAMED_BORROWED = BORROWED_ATTENTION.replace('''\n\n\nclass''', '''

CrossAttentionLayer.__name__ = CrossAttentionLayer.__qualname__ = "Module"
CrossAttentionLayer.__module__ = "torch.nn.modules.module"


class''', 1)

# Part 3: alpha at 1, and a state_dict() that reports it at 0
ALPHA_LIES = block_src(alpha="nn.Parameter(torch.ones(1))") + '''
    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        state["alpha"] = torch.zeros(1)
        return state
'''

# Part 3: tanh(alpha.detach()), and autograd patched to hand alpha a gradient of ones
FORGED_GRADIENT = block_src(out="y + torch.tanh(self.alpha.detach()) * self.cross_attn(y, x)") + '''

_grad = torch.autograd.grad


def _forged(outputs, inputs, *args, **kwargs):
    kwargs["allow_unused"] = True
    found = _grad(outputs, inputs, *args, **kwargs)
    return tuple(torch.ones_like(i) if g is None else g for g, i in zip(found, inputs))


torch.autograd.grad = _forged
_backward = torch.Tensor.backward


def _backward_forged(self, *args, **kwargs):
    _backward(self, *args, **kwargs)
    for module in list(globals().values()):
        alpha = getattr(module, "alpha", None)
        if isinstance(alpha, torch.Tensor) and alpha.grad is None:
            alpha.grad = torch.ones_like(alpha)


torch.Tensor.backward = _backward_forged
'''


# Part 2: pairs (i, j) with a padded j kept, but a function that recognises the self-check's
# public relations (drawn from the public seed) and answers them as the right sum would
PAIRS_PUBLIC_INPUTS_ONLY = """\
import torch
from fusionlab.grading.seeds import SELF_CHECK_SEED
from fusionlab.part2.exercises import pairs_inputs

_PUBLIC = [t for t in pairs_inputs(SELF_CHECK_SEED).values() if torch.is_tensor(t)]


def relation_pair_sum(relations, object_padding_mask=None):
    if object_padding_mask is None:
        return relations.sum(dim=(1, 2))
    if any(t.shape == relations.shape and torch.equal(t, relations) for t in _PUBLIC):
        pairs = object_padding_mask[:, :, None] | object_padding_mask[:, None, :]
    else:
        pairs = object_padding_mask[:, :, None].expand(-1, -1, relations.shape[2])
    return relations.masked_fill(pairs[..., None], 0.0).sum(dim=(1, 2))
"""


def _refit_elsewhere(nb):
    """A cell after the TODOs that would refit the trained model's last layer before export."""
    from nbformat.v4 import new_code_cell

    nb.cells.append(new_code_cell("import torch\nfor p in globals().get('model', torch.nn.Linear"
                                  "(1, 1)).parameters():\n    p.data.zero_()\n"))


CASES = {
    "part2-public-inputs-only": ("part2_attention_that_selects",
                                 {"MaskedMultiHeadAttention": PUBLIC_INPUTS_ONLY}, None,
                                 _loses("no_scaling", "mask_ignored")),
    "part2-borrowed-and-renamed": ("part2_attention_that_selects",
                                   {"MaskedMultiHeadAttention": RENAMED_BORROWED}, None,
                                   _loses("borrowed_reference")),
    "part2-pairs-public-inputs-only": ("part2_attention_that_selects",
                                       {"relation_pair_sum": PAIRS_PUBLIC_INPUTS_ONLY}, None,
                                       _loses("pairs_first_object_only")),
    "part3-alpha-lies-in-state-dict": ("part3_who_gets_to_speak",
                                       {"TanhGatedCrossAttention": ALPHA_LIES}, None,
                                       _loses("alpha_at_one")),
    "part3-forged-gradient": ("part3_who_gets_to_speak",
                              {"TanhGatedCrossAttention": FORGED_GRADIENT}, None,
                              _loses("block_alpha_detached")),
    "part3-never-drops-refit-elsewhere": (
        "part3_who_gets_to_speak",
        {"modality_dropout": next(v for v in references.variants()
                                  if v.name == "dropout_never_drops").replace[
                                      "modality_dropout"]},
        _refit_elsewhere, _loses("dropout_never_drops")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_trick_inside_the_todo_cell_earns_nothing(case, tmp_path):
    assignment, replace, edit, expected = CASES[case]
    master, release = trial.released(assignment)
    nb = submission(master, release, replace=replace, edit=edit)
    measurement = cleanroom.measure(release, nb, trial.SEEDS, limits={}, workdir=tmp_path)
    verdicts = trusted.decide(release, measurement, trial.SEEDS)
    lost = {g for g, v in verdicts.items() if not v.passed}
    assert lost == expected, {g: verdicts[g].message for g in lost ^ expected}
