"""Example submissions, built from the instructor master so that they never go stale.

A submission is the released notebook (what students download) with its solution cells filled
in: with the master's solutions (``correct``), left as released (``untouched``), or with one
class replaced by a typical mistake. ``write_examples`` writes the ones ``make demo`` grades;
the tests build every variant in ``PART1_VARIANTS`` the same way.

    python -m autograder examples part1_fusion_strategies --out example-submissions
"""

from __future__ import annotations

import ast
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import nbformat

from . import SOURCE_ROOT
from .notebooks import graded_cells as notebook_graded_cells
from .notebooks import strip_solution_markers


def release(assignment: str, source_root: Path = SOURCE_ROOT) -> tuple[dict, dict]:
    """({notebook: master}, {notebook: released}) for ``assignment``, released by nbgrader in a
    temporary course directory."""
    from .course import create_course  # nbgrader: imported only where it is needed

    with tempfile.TemporaryDirectory(prefix="autograder-release-") as tmp:
        course = create_course(Path(tmp) / "course", assignment, source_root)
        masters, released = {}, {}
        for name in course.notebooks:
            masters[name] = nbformat.read(
                Path(source_root) / assignment / f"{name}.ipynb", as_version=4)
            released[name] = nbformat.read(
                course.root / "release" / assignment / f"{name}.ipynb", as_version=4)
    return masters, released


def master_namespace(assignment: str, cell_ids, source_root: Path = SOURCE_ROOT) -> dict:
    """The master's own code as plain Python: run the imports of its setup cell (the first code
    cell), then the cells ``cell_ids`` (solution markers stripped), in a fresh namespace.

    Tests use it to exercise the reference solutions exactly as the notebook defines them, so
    that no second copy of a solution exists to drift.
    """
    master = nbformat.read(Path(source_root) / assignment / f"{assignment}.ipynb", as_version=4)
    code_cells = [cell for cell in master.cells if cell.cell_type == "code"]
    setup = "\n".join(line for line in code_cells[0].source.splitlines()
                      if not line.lstrip().startswith(("%", "!")))  # IPython magics
    imports = [node for node in ast.parse(setup).body
               if isinstance(node, (ast.Import, ast.ImportFrom))]
    namespace: dict = {}
    exec(compile(ast.Module(body=imports, type_ignores=[]), "setup imports", "exec"), namespace)
    cells = {cell.get("id"): cell.source for cell in code_cells}
    for cell_id in cell_ids:
        source = strip_solution_markers(cells[cell_id])
        exec(compile(source, f"{assignment}.ipynb:{cell_id}", "exec"), namespace)
    return namespace


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def submission(master, released, replace: dict[str, str] | None = None,
               edit: Callable | None = None, solved: bool = True):
    """A student notebook: ``released`` with each solution cell set to the master's solution
    (``solved``) or left as released; ``replace`` maps a class name (``"GatedFusionModel"``) or
    a grade_id to the source of the cell that defines it; ``edit(nb)`` changes it further."""
    solutions = {_grade_id(c): strip_solution_markers(c.source) for c in master.cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.reads(nbformat.writes(released), as_version=4)  # a deep copy
    replaced = set()
    for cell in nb.cells:
        grade_id = _grade_id(cell)
        if grade_id not in solutions:
            continue
        if solved:
            cell.source = solutions[grade_id]
        for key, source in (replace or {}).items():
            if key == grade_id or re.search(rf"^class {re.escape(key)}\b", solutions[grade_id],
                                            re.MULTILINE):
                cell.source = source
                replaced.add(key)
    missing = set(replace or {}) - replaced
    if missing:
        raise ValueError(f"no solution cell defines {sorted(missing)}")
    if edit is not None:
        edit(nb)
    return nb


# ----------------------------------------------------------------------------- Part 1 variants

_BIDIR = '''\
class BidirectionalCrossAttention(nn.Module):
    def __init__(self, dim, num_heads=4):
        super().__init__()
        self.txt_to_img = CrossAttentionLayer(dim, num_heads)
        self.img_to_txt = CrossAttentionLayer(dim, num_heads)
        self.norm_txt = nn.LayerNorm(dim)
        self.norm_img = nn.LayerNorm(dim)

    def forward(self, img_embed, txt_embed):
        txt_upd = {txt_upd}
        img_upd = {img_upd}
        return {result}
'''
_TXT_UPD = "self.norm_txt(txt_embed + self.txt_to_img(txt_embed, img_embed))"
_IMG_UPD = "self.norm_img(img_embed + self.img_to_txt(img_embed, txt_embed))"
_POOLED = "torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)"


def bidir_src(txt_upd=_TXT_UPD, img_upd=_IMG_UPD, result=_POOLED) -> str:
    return _BIDIR.format(txt_upd=txt_upd, img_upd=img_upd, result=result)


_GATED = '''\
class GatedFusionModel(nn.Module):
    def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_classes=3):
        super().__init__()
        self.img_proj = nn.Linear(img_dim, embed_dim)
        self.txt_proj = nn.Linear(txt_dim, embed_dim)
        self.gate = {gate}
        self.classifier = {classifier}

    def forward(self, img_feat, txt_feat):
        alpha = torch.sigmoid(self.gate)
        z = alpha * self.img_proj(img_feat) + (1 - alpha) * self.txt_proj(txt_feat)
        return self.classifier(z)
'''
_MLP = ("nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), "
        "nn.Linear(embed_dim, num_classes))")


def gated_src(gate="nn.Parameter(torch.zeros(1))", classifier=_MLP) -> str:
    return _GATED.format(gate=gate, classifier=classifier)


def graded_cells(assignment: str, source_root: Path = SOURCE_ROOT) -> dict[str, float]:
    """grade_id -> points of every graded cell of the master, in notebook order."""
    master = nbformat.read(Path(source_root) / assignment / f"{assignment}.ipynb", as_version=4)
    return notebook_graded_cells(master)


# name -> (class name -> replacement cell source, graded cells expected to fail).
# The expected failures follow from the trusted verdicts (autograder/hidden/part1.py), each
# check on its own; tests/test_check.py asserts them for the self-checks and the verdicts alike.
PART1_VARIANTS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    # pooled over the feature axis: (B, 2) instead of (B, dim)
    "wrong_shape": (
        {"BidirectionalCrossAttention": bidir_src(result="torch.cat([txt_upd, img_upd], dim=1)"
                                                      ".mean(dim=2)")},
        ("bidir_visible_shape", "bidir_shapes", "bidir_equivalence", "bidir_accuracy"),
    ),
    "no_pooling": (
        {"BidirectionalCrossAttention": bidir_src(result="torch.cat([txt_upd, img_upd], dim=1)")},
        ("bidir_visible_shape", "bidir_shapes", "bidir_equivalence", "bidir_accuracy"),
    ),
    # tokens concatenated along the feature axis: the gradient and NaN checks still run
    "concat_feature_axis": (
        {"BidirectionalCrossAttention": bidir_src(result="torch.cat([txt_upd, img_upd], dim=-1)"
                                                      ".mean(dim=1)")},
        ("bidir_visible_shape", "bidir_shapes", "bidir_equivalence", "bidir_accuracy"),
    ),
    "no_residual": (
        {"BidirectionalCrossAttention": bidir_src(
            txt_upd="self.norm_txt(self.txt_to_img(txt_embed, img_embed))",
            img_upd="self.norm_img(self.img_to_txt(img_embed, txt_embed))")},
        ("bidir_equivalence",),
    ),
    "no_norm": (
        {"BidirectionalCrossAttention": bidir_src(
            txt_upd="txt_embed + self.txt_to_img(txt_embed, img_embed)",
            img_upd="img_embed + self.img_to_txt(img_embed, txt_embed)")},
        ("bidir_equivalence", "bidir_gradients"),  # the norms are unused: no gradient
    ),
    "swapped_directions": (
        {"BidirectionalCrossAttention": bidir_src(
            txt_upd="self.norm_txt(txt_embed + self.img_to_txt(txt_embed, img_embed))",
            img_upd="self.norm_img(img_embed + self.txt_to_img(img_embed, txt_embed))")},
        ("bidir_equivalence",),
    ),
    "gate_at_one": (
        {"GatedFusionModel": gated_src(gate="nn.Parameter(torch.ones(1))")},
        ("gated_gate_init",),
    ),
    "gate_not_parameter": (
        {"GatedFusionModel": gated_src(gate="torch.zeros(1)")},
        ("gated_gate_init", "gated_gate_gradient"),
    ),
    # a linear head on a linear mix of the modalities cannot learn XOR; it is not the MLP the
    # interface asks for, so the reference formula cannot be applied to its weights either
    "linear_head": (
        {"GatedFusionModel": gated_src(classifier="nn.Linear(embed_dim, num_classes)")},
        ("gated_equivalence", "gated_accuracy"),
    ),
}

# The examples `make demo` grades (Part 1): name -> what it shows.
EXAMPLES = {
    "correct": "the master's solutions: full marks",
    "untouched": "the notebook as released: 0 points",
    "wrong_gate_at_one": "gate initialised at 1.0 instead of 0 (variant gate_at_one)",
    "wrong_no_residual": "the residual connections are missing (variant no_residual)",
}


# ----------------------------------------------------------------------------- Part 3 variants

_GMU = '''\
class GatedMultimodalUnit(nn.Module):
    def __init__(self, img_dim=32, txt_dim=16, hidden_dim=32):
        super().__init__()
        self.img_dim, self.txt_dim, self.hidden_dim = img_dim, txt_dim, hidden_dim
        self.out_dim = hidden_dim
        self.last_gate = None
        self.img_proj = nn.Linear(img_dim, hidden_dim)
        self.txt_proj = nn.Linear(txt_dim, hidden_dim)
        self.gate_proj = nn.Linear(img_dim + txt_dim, hidden_dim)

    def forward(self, img_feat, txt_feat):
        check_pair(img_feat, txt_feat, self.img_dim, self.txt_dim)
        h_v = {h_v}
        h_t = {h_t}
        z = torch.sigmoid(self.gate_proj(torch.cat([img_feat, txt_feat], dim=-1)))
        self.last_gate = z.detach()
        return {h}
'''


def _gmu(h_v="torch.tanh(self.img_proj(img_feat))", h_t="torch.tanh(self.txt_proj(txt_feat))",
         h="z * h_v + (1 - z) * h_t") -> str:
    return _GMU.format(h_v=h_v, h_t=h_t, h=h)


_BLOCK = '''\
class TanhGatedCrossAttention(nn.Module):
    def __init__(self, dim=32, num_heads=4):
        super().__init__()
        self.cross_attn = CrossAttentionLayer(dim, num_heads)
        self.alpha = {alpha}

    def forward(self, y, x, key_padding_mask=None):
        return {out}
'''


def _block(alpha="nn.Parameter(torch.zeros(1))",
           out="y + torch.tanh(self.alpha) * self.cross_attn(y, x, key_padding_mask)") -> str:
    return _BLOCK.format(alpha=alpha, out=out)


# the shortcut the exercise makes irrelevant: fusionlab's drop_vectors with its own coins
_DROPOUT_SHORTCUT = '''\
from fusionlab.gating_data import drop_vectors


def modality_dropout(x, p, generator=None):
    dropped = torch.rand(x.shape[0]) < p
    return drop_vectors(x, dropped), dropped
'''

# modality dropout that drops nothing unless it is given a generator: the rule holds (it is
# checked with generators), the rate and the training run (without one) show the difference
_DROPOUT_NEEDS_GENERATOR = '''\
def modality_dropout(x, p, generator=None):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if generator is None:
        return x.clone(), torch.zeros(x.shape[0], dtype=torch.bool)
    dropped = torch.rand(x.shape[0], generator=generator) < p
    return x.masked_fill(dropped.view((-1,) + (1,) * (x.dim() - 1)), 0.0), dropped
'''

PART3_VARIANTS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    # the output is the formula's, but z is detached in it: the gate never trains, and the
    # trained classifier's gate does not follow the switch
    "gmu_gate_detached": (
        {"GatedMultimodalUnit": _gmu(h="z.detach() * h_v + (1 - z.detach()) * h_t")},
        ("gmu_accuracy",),
    ),
    "gmu_no_tanh": (
        {"GatedMultimodalUnit": _gmu(h_v="self.img_proj(img_feat)", h_t="self.txt_proj(txt_feat)")},
        ("gmu_equivalence",),
    ),
    "gmu_swapped_gate": (
        {"GatedMultimodalUnit": _gmu(h="(1 - z) * h_v + z * h_t")},
        ("gmu_equivalence",),
    ),
    "alpha_at_one": (
        {"TanhGatedCrossAttention": _block(alpha="nn.Parameter(torch.ones(1))")},
        ("block_visible_identity", "block_attributes"),
    ),
    "block_no_tanh": (
        {"TanhGatedCrossAttention": _block(out="y + self.alpha * self.cross_attn(y, x, "
                                               "key_padding_mask)")},
        ("block_equivalence", "block_mask"),
    ),
    "dropout_shortcut": (
        {"modality_dropout_solution": _DROPOUT_SHORTCUT},
        ("dropout_rule", "dropout_tokens"),
    ),
    "dropout_needs_generator": (
        {"modality_dropout_solution": _DROPOUT_NEEDS_GENERATOR},
        ("dropout_rate", "dropout_accuracy"),
    ),
}

# The examples `make demo` grades, per assignment: name -> what it shows.
PART3_EXAMPLES = {
    "correct": "the master's solutions: full marks",
    "untouched": "the notebook as released: 0 points",
    "wrong_gmu_gate_detached": "GMU with the gate detached in its output: the gate never trains "
                               "(variant gmu_gate_detached, the accuracy cell)",
    "wrong_alpha_at_one": "tanh-gated block with alpha initialised at 1 (variant alpha_at_one)",
    "wrong_dropout_shortcut": "modality dropout through drop_vectors with its own coins "
                              "(variant dropout_shortcut)",
}


# ----------------------------------------------------------------------------- Part 2 variants

_ATTENTION = """\
class MaskedMultiHeadAttention(nn.Module):
    def __init__(self, dim, num_heads=4):
        super().__init__()
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.last_attn_weights = None
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query, kv, key_padding_mask=None):
        key_padding_mask = check_attention_inputs(query, kv, key_padding_mask, self.dim)
        B, N_q, N_kv = query.shape[0], query.shape[1], kv.shape[1]
        H, Dh = self.num_heads, self.head_dim
        q = self.q_proj(query).reshape(B, N_q, H, Dh).transpose(1, 2)
        k = self.k_proj(kv).reshape(B, N_kv, H, Dh).transpose(1, 2)
        v = self.v_proj(kv).reshape(B, N_kv, H, Dh).transpose(1, 2)
        scores = {scores}
        if {use_mask}:
            pad = {pad}
            scores = scores.masked_fill(pad, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if {use_mask}:
            weights = weights.masked_fill(pad, 0.0)
        self.last_attn_weights = weights.detach()
        out = (weights @ v).transpose(1, 2).reshape(B, N_q, H * Dh)
        return self.out_proj(out)
"""


def attention_src(scores="q @ k.transpose(-2, -1) / Dh**0.5",
                  use_mask="key_padding_mask is not None",
                  pad="key_padding_mask[:, None, None, :]") -> str:
    return _ATTENTION.format(scores=scores, use_mask=use_mask, pad=pad)


_COATTENTION = """\
class CoAttentionBlock(nn.Module):
    def __init__(self, dim, num_heads=4):
        super().__init__()
        self.words_read_objects = CrossAttentionBlock(dim, num_heads,
                                                      attention=MaskedMultiHeadAttention)
        self.objects_read_words = CrossAttentionBlock(dim, num_heads,
                                                      attention=MaskedMultiHeadAttention)

    def forward(self, words, objects, word_padding_mask=None, object_padding_mask=None):
        new_words = self.words_read_objects(words, objects, {object_mask})
        new_objects = self.objects_read_words(objects, {objects_read}, {word_mask})
        return new_words, new_objects
"""


def coattention_src(objects_read="words", object_mask="object_padding_mask",
                    word_mask="word_padding_mask") -> str:
    return _COATTENTION.format(objects_read=objects_read, object_mask=object_mask,
                               word_mask=word_mask)


# name -> (class name -> replacement cell source, graded cells expected to fail); asserted
# for the self-checks and the verdicts by tests/test_check_part2.py, for the examples of
# `make demo` through real nbgrader by tests/test_grading_part2.py.
PART2_VARIANTS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "no_scaling": (
        {"MaskedMultiHeadAttention": attention_src(scores="q @ k.transpose(-2, -1)")},
        ("attn_equivalence",),
    ),
    "mask_ignored": (
        {"MaskedMultiHeadAttention": attention_src(use_mask="False")},
        ("attn_equivalence", "attn_weights", "attn_padding", "attn_mask_polarity",
         "attn_accuracy"),
    ),
    "mask_inverted": (
        {"MaskedMultiHeadAttention": attention_src(pad="~key_padding_mask[:, None, None, :]")},
        ("attn_equivalence", "attn_weights", "attn_padding", "attn_mask_polarity",
         "attn_accuracy"),
    ),
    # the package's reference layer passed off as the student's own
    "borrowed_reference": (
        {"MaskedMultiHeadAttention": "from fusionlab.models import CrossAttentionLayer\n\n\n"
                                     "class MaskedMultiHeadAttention(CrossAttentionLayer):\n"
                                     "    pass\n"},
        ("attn_attributes",),
    ),
    "coattention_sequential": (
        {"CoAttentionBlock": coattention_src(objects_read="new_words")},
        ("coatt_equivalence",),
    ),
    "coattention_no_masks": (
        {"CoAttentionBlock": coattention_src(object_mask="None", word_mask="None")},
        ("coatt_equivalence", "coatt_padding"),
    ),
}

_PAIRS_ROWS_ONLY = """\
def relation_pair_sum(relations, object_padding_mask=None):
    if object_padding_mask is None:
        return relations.sum(dim=(1, 2))
    return relations.masked_fill(object_padding_mask[:, :, None, None], 0.0).sum(dim=(1, 2))
"""
PART2_VARIANTS["pairs_first_object_only"] = (  # pairs (i, j) with a padded j are kept
    {"pairs_solution": _PAIRS_ROWS_ONLY},
    ("pairs_sum", "pairs_padding"),
)

PART2_EXAMPLES = {
    "correct": "the master's solutions: full marks",
    "untouched": "the notebook as released: 0 points",
    "wrong_no_scaling": "attention scores not divided by sqrt(head_dim) (variant no_scaling)",
    "wrong_coattention_sequential": "the objects read the updated words (variant "
                                    "coattention_sequential)",
}


def part2_variant(master, released, name: str):
    replace, _ = PART2_VARIANTS[name]
    return submission(master, released, replace=replace)


def part3_variant(master, released, name: str):
    replace, _ = PART3_VARIANTS[name]
    return submission(master, released, replace=replace)


def part1_variant(master, released, name: str):
    replace, _ = PART1_VARIANTS[name]
    return submission(master, released, replace=replace)


def write_examples(assignment: str, out: Path, source_root: Path = SOURCE_ROOT) -> list[Path]:
    """Write the example submissions of ``assignment`` as ``out/<name>.ipynb``."""
    masters, released = release(assignment, source_root)
    if len(masters) != 1:
        raise ValueError("example submissions are built for single-notebook assignments")
    (name,) = masters
    master, student = masters[name], released[name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notebooks = {
        "correct": submission(master, student),
        "untouched": submission(master, student, solved=False),
    }
    if assignment == "part1_fusion_strategies":
        notebooks["wrong_gate_at_one"] = part1_variant(master, student, "gate_at_one")
        notebooks["wrong_no_residual"] = part1_variant(master, student, "no_residual")
    if assignment == "part2_attention_that_selects":
        notebooks["wrong_no_scaling"] = part2_variant(master, student, "no_scaling")
        notebooks["wrong_coattention_sequential"] = part2_variant(master, student,
                                                                  "coattention_sequential")
    if assignment == "part3_who_gets_to_speak":
        notebooks["wrong_gmu_gate_detached"] = part3_variant(master, student, "gmu_gate_detached")
        notebooks["wrong_alpha_at_one"] = part3_variant(master, student, "alpha_at_one")
        notebooks["wrong_dropout_shortcut"] = part3_variant(master, student, "dropout_shortcut")
    paths = []
    for example, nb in notebooks.items():
        path = out / f"{example}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    return paths
