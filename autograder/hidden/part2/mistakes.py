"""Part 2's known mistakes, as a student would write them: the source of the TODO cell, and the
graded cells each one loses (no other). The demo examples (``example=True``), the parity tests
(``tests/grading/test_exercises.py``) and the threshold tool read them.

A mistake costs its own TODO's cells only: the co-attention is judged on the student's own
attention, so no attention mistake reaches a ``coatt_`` cell; the accuracy cell trains the
student's attention whatever it computes, and a mistake loses it only where that attention
does not learn the task (measured: ``python -m autograder.authoring.thresholds part2``).
"""

from __future__ import annotations

from ..references import Variant

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
        q = self.q_proj(query){split_q}
        k = self.k_proj(kv){split_k}
        v = self.v_proj(kv){split_v}
        scores = {scores}
        if key_padding_mask is not None:
            pad = {pad}
            {mask_scores}
        weights = torch.softmax(scores, dim={softmax_dim})
        if key_padding_mask is not None:
            weights = weights.masked_fill(pad, 0.0)
        self.last_attn_weights = {kept}
        out = (weights @ v){merge}
        return self.out_proj(out)
"""
_SPLIT_Q = ".reshape(B, N_q, H, Dh).transpose(1, 2)"
_SPLIT_KV = ".reshape(B, N_kv, H, Dh).transpose(1, 2)"
_MASK_SCORES = "scores = scores.masked_fill(pad, torch.finfo(scores.dtype).min)"


def attention_src(scores="q @ k.transpose(-2, -1) / Dh**0.5",
                  pad="key_padding_mask[:, None, None, :]", mask_scores=_MASK_SCORES,
                  softmax_dim="-1", kept="weights.detach()", split_q=_SPLIT_Q,
                  split_k=_SPLIT_KV, split_v=_SPLIT_KV,
                  merge=".transpose(1, 2).reshape(B, N_q, H * Dh)") -> str:
    """The master's attention with the given pieces replaced (the defaults are correct)."""
    return _ATTENTION.format(scores=scores, pad=pad, mask_scores=mask_scores,
                             softmax_dim=softmax_dim, kept=kept, split_q=split_q,
                             split_k=split_k, split_v=split_v, merge=merge)


_COATTENTION = """\
{extra}class CoAttentionBlock(nn.Module):
    def __init__(self, dim, num_heads=4):
        super().__init__()
        self.words_read_objects = CrossAttentionBlock(dim, num_heads, attention={attention})
        self.objects_read_words = {second}

    def forward(self, words, objects, word_padding_mask=None, object_padding_mask=None):
        new_words = self.words_read_objects(words, objects, {object_mask})
        new_objects = self.objects_read_words(objects, {objects_read}, {word_mask})
        return {result}
"""


def coattention_src(objects_read="words", object_mask="object_padding_mask",
                    word_mask="word_padding_mask", attention="MaskedMultiHeadAttention",
                    second=None, result="new_words, new_objects", extra="") -> str:
    second = second or f"CrossAttentionBlock(dim, num_heads, attention={attention})"
    return _COATTENTION.format(objects_read=objects_read, object_mask=object_mask,
                               word_mask=word_mask, attention=attention, second=second,
                               result=result, extra=extra)


_PAIRS = """\
def relation_pair_sum(relations, object_padding_mask=None):
    if object_padding_mask is None:
        return relations.{reduce}(dim=(1, 2))
    pair_padding = {pair_padding}
    return relations.masked_fill(pair_padding[..., None], 0.0).{reduce}(dim=(1, 2))
"""


def pairs_src(pair_padding="object_padding_mask[:, :, None] | object_padding_mask[:, None, :]",
              reduce="sum") -> str:
    return _PAIRS.format(pair_padding=pair_padding, reduce=reduce)


_MASKED = ("attn_equivalence", "attn_weights", "attn_padding", "attn_mask_polarity")


def _attention(name, description, loses, example=False, threshold=False, **source) -> Variant:
    return Variant(name, "attention", {"MaskedMultiHeadAttention": attention_src(**source)},
                   tuple(loses), description, example, threshold)


def _coattention(name, description, loses, example=False, **source) -> Variant:
    return Variant(name, "coattention", {"CoAttentionBlock": coattention_src(**source)},
                   tuple(loses), description, example)


def _pairs(name, description, loses, **source) -> Variant:
    return Variant(name, "pairs", {"relation_pair_sum": pairs_src(**source)}, tuple(loses),
                   description)


BORROWED_ATTENTION = '''\
from fusionlab.models import CrossAttentionLayer


class MaskedMultiHeadAttention(CrossAttentionLayer):
    def forward(self, query, kv, key_padding_mask=None):
        if key_padding_mask is None:
            return super().forward(query, kv)
        B, N_q, _ = query.shape
        weights = query.new_zeros(B, self.num_heads, N_q, kv.shape[1])
        rows = []
        for b in range(B):
            real = (~key_padding_mask[b]).nonzero().squeeze(-1)
            if len(real) == 0:
                rows.append(self.out_proj(torch.zeros_like(query[b:b + 1])))
                continue
            rows.append(super().forward(query[b:b + 1], kv[b:b + 1, real]))
            weights[b:b + 1, :, :, real] = self.last_attn_weights
        self.last_attn_weights = weights
        return torch.cat(rows)
'''

ATTENTION_MISTAKES = (
    _attention("no_scaling", "scores not divided by sqrt(head_dim)", ("attn_equivalence",),
               example=True, threshold=True, scores="q @ k.transpose(-2, -1)"),
    _attention("sqrt_dim", "scores divided by sqrt(dim) instead of sqrt(head_dim)",
               ("attn_equivalence",), threshold=True,
               scores="q @ k.transpose(-2, -1) / self.dim**0.5"),
    _attention("mask_ignored", "the key padding mask is ignored", (*_MASKED, "attn_accuracy"),
               threshold=True, pad="torch.zeros_like(key_padding_mask)[:, None, None, :]"),
    _attention("mask_inverted", "the mask is inverted (True = keep)", (*_MASKED, "attn_accuracy"),
               threshold=True, pad="~key_padding_mask[:, None, None, :]"),
    _attention("mask_after_softmax", "the padded weights are zeroed after the softmax only",
               _MASKED, threshold=True, mask_scores="pass"),
    _attention("softmax_over_queries", "the softmax over the queries (dim=-2), not the keys",
               ("attn_equivalence", "attn_weights"), threshold=True, softmax_dim="-2"),
    _attention("heads_not_transposed", "heads split by reshaping straight to (B, H, N, Dh)",
               ("attn_equivalence", "attn_padding", "attn_mask_polarity", "attn_order",
                "attn_accuracy"), threshold=True, split_q=".reshape(B, H, N_q, Dh)",
               split_k=".reshape(B, H, N_kv, Dh)", split_v=".reshape(B, H, N_kv, Dh)",
               merge=".reshape(B, N_q, H * Dh)"),
    _attention("k_proj_detached", "the keys are detached: k_proj never trains",
               ("attn_gradients", "attn_accuracy"), threshold=True,
               split_k=".reshape(B, N_kv, H, Dh).transpose(1, 2).detach()"),
    _attention("weights_not_detached", "last_attn_weights kept with its graph",
               ("attn_weights",), kept="weights"),
    # the package's layer passed off as the student's own: it reads every key (no mask), so
    # the masking is done by leaving the padded keys out, sample by sample; the result is right
    Variant("borrowed_reference", "attention", {"MaskedMultiHeadAttention": BORROWED_ATTENTION},
            ("attn_attributes",), "CrossAttentionLayer subclassed instead of written"),
)

COATTENTION_MISTAKES = (
    _coattention("coattention_sequential", "the objects read the updated words",
                 ("coatt_equivalence",), example=True, objects_read="new_words"),
    _coattention("coattention_no_masks", "the masks are not passed to the two directions",
                 ("coatt_equivalence", "coatt_padding"), object_mask="None", word_mask="None"),
    _coattention("coattention_swapped_masks", "each direction gets the other stream's mask",
                 ("coatt_equivalence", "coatt_padding"), object_mask="word_padding_mask",
                 word_mask="object_padding_mask"),
    _coattention("coattention_objects_detached", "objects' detached from the graph",
                 ("coatt_gradients",), result="new_words, new_objects.detach()"),
    _coattention("coattention_shared_block", "one block for both directions",
                 ("coatt_attributes",), second="self.words_read_objects"),
    _coattention("coattention_borrowed_layer", "the blocks built on fusionlab's "
                 "CrossAttentionLayer, not on the student's attention (it takes no mask)",
                 ("coatt_attributes", "coatt_equivalence", "coatt_padding"),
                 attention="CrossAttentionLayer",
                 extra="from fusionlab.models import CrossAttentionLayer\n\n\n"),
)

PAIRS_MISTAKES = (
    _pairs("pairs_first_object_only", "pairs (i, j) with a padded j are kept",
           ("pairs_sum", "pairs_padding"), pair_padding="object_padding_mask[:, :, None]"
                                                        ".expand(-1, -1, relations.shape[2])"),
    _pairs("pairs_mask_ignored", "the mask is ignored", ("pairs_sum", "pairs_padding"),
           pair_padding="torch.zeros_like(relations[..., 0], dtype=torch.bool)"),
    _pairs("pairs_mean", "the mean over the pairs, not the sum", ("pairs_sum",), reduce="mean"),
)
