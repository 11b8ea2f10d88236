"""Reference models for Part 2: answering questions about a set of objects.

Every model reads a scene and a question as token sequences with padding masks (``True`` marks
padding, as in PyTorch's ``key_padding_mask``) and returns answer logits:

    model(objects, question, object_padding_mask, question_padding_mask)  # -> (B, num_answers)
    # objects (B, N, obj_dim) float; question (B, L) word ids; masks (B, N) and (B, L) bool

which is the order of ``fusionlab.part2.scenes.SortOfClevr.tensors()``. Words enter as one-hot
vectors through an ``nn.Linear`` (equal to an embedding table, but made of the layers that
``fusionlab.multiseed`` stacks). Wrong shapes raise a ``ValueError`` naming the expected shape.

The models, from least to most structure:

- ``FlatEarlyFusion``: every slot's features side by side plus the bag of words, one MLP;
- ``PooledLateFusion``: the scene and the question are each pooled into one vector first;
- ``SceneCrossAttention``: the question's words read the objects in 1 or more attention hops;
- ``CoAttentionFusion``: ViLBERT-style co-attention blocks (given as ``block``), each stream
  reads the other;
- ``RelationNetwork``: a question-conditioned ``g`` on every pair of objects, summed, then ``f``.

``use_object_mask=False`` makes a model treat the padded slots as objects (the ablation of the
padding mask). These models live apart from ``fusionlab.models`` (Part 1's) because they share
the scene inputs and the building blocks below, and nothing with Part 1's but its attention
layer and pooling.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import check_padding_mask, masked_mean, mlp
from .scenes import NUM_ANSWERS, OBJECT_DIM, VOCAB_SIZE

# ----------------------------------------------------------------------------- inputs


def check_scene_inputs(objects, question, object_padding_mask, question_padding_mask,
                       obj_dim: int, vocab_size: int):
    """Validate a batch of scenes and questions; return the masks (``None`` = no padding)."""
    if not isinstance(objects, torch.Tensor):
        raise ValueError(f"objects must have shape (B, N, {obj_dim}), got {type(objects).__name__}")
    if objects.dim() != 3 or objects.shape[-1] != obj_dim:
        shape = tuple(objects.shape)
        raise ValueError(f"objects must have shape (B, N, {obj_dim}), got {shape}")
    if not objects.is_floating_point():
        raise ValueError(f"objects must be a float tensor, got {objects.dtype}")
    if (
        not isinstance(question, torch.Tensor)
        or question.dim() != 2
        or question.is_floating_point()
        or question.dtype == torch.bool
    ):
        what = (f"{tuple(question.shape)} {question.dtype}" if isinstance(question, torch.Tensor)
                else type(question).__name__)
        raise ValueError(f"question must have shape (B, L) of integer word ids, got {what}")
    if question.shape[0] != objects.shape[0]:
        raise ValueError(
            f"objects and question must share the batch size B, got {objects.shape[0]} "
            f"and {question.shape[0]}"
        )
    if question.numel() and (int(question.min()) < 0 or int(question.max()) >= vocab_size):
        raise ValueError(f"question word ids must lie in [0, {vocab_size}), got "
                         f"{int(question.min())} to {int(question.max())}")
    object_mask = check_padding_mask(object_padding_mask, objects, "object_padding_mask")
    question_mask = check_padding_mask(question_padding_mask, question[..., None],
                                       "question_padding_mask")
    return object_mask, question_mask


def masked_sum(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Sum over the tokens of ``x`` ``(B, N, D)`` that are not padding -> ``(B, D)``."""
    if padding_mask is None:
        return x.sum(dim=1)
    return (x * (~padding_mask).unsqueeze(-1).to(x.dtype)).sum(dim=1)


class SceneModel(nn.Module):
    """What every scene model shares: input checks, one-hot words, the mask switch."""

    def __init__(self, obj_dim: int, vocab_size: int, use_object_mask: bool):
        super().__init__()
        self.obj_dim, self.vocab_size = obj_dim, vocab_size
        self.use_object_mask = use_object_mask

    def inputs(self, objects, question, object_padding_mask, question_padding_mask):
        """``(objects, words, object_mask, question_mask)``, with the words one-hot
        ``(B, L, vocab_size)``; the object mask is dropped when ``use_object_mask`` is off."""
        object_mask, question_mask = check_scene_inputs(
            objects, question, object_padding_mask, question_padding_mask,
            self.obj_dim, self.vocab_size,
        )
        words = F.one_hot(question, self.vocab_size).to(objects.dtype)  # (B, L, V)
        return objects, words, object_mask if self.use_object_mask else None, question_mask

    def token_streams(self, objects, question, object_padding_mask, question_padding_mask):
        """``(scene, text, object_mask, question_mask)`` of the token models: every object
        through ``obj_encoder`` ``(B, N, E)``, every one-hot word through ``word_proj``
        ``(B, L, E)`` (the two layers such a model defines), and the masks of ``inputs``."""
        objects, words, object_mask, question_mask = self.inputs(
            objects, question, object_padding_mask, question_padding_mask)
        return self.obj_encoder(objects), self.word_proj(words), object_mask, question_mask


# ----------------------------------------------------------------------------- baselines


class FlatEarlyFusion(SceneModel):
    """Early fusion over a scene, Sort-of-CLEVR's "MLP" baseline: the features of every slot,
    side by side, plus the question's bag of words, go through one MLP.

    Padded slots are zeroed (with the mask), so junk there changes nothing. Each slot has its
    own weights, so the model depends on the order of the objects and on the number of slots,
    ``num_slots``, fixed at construction.
    """

    def __init__(self, num_slots=6, obj_dim=OBJECT_DIM, vocab_size=VOCAB_SIZE, hidden_dim=128,
                 num_answers=NUM_ANSWERS, use_object_mask=True):
        super().__init__(obj_dim, vocab_size, use_object_mask)
        self.num_slots = num_slots
        self.mlp = nn.Sequential(
            nn.Linear(num_slots * obj_dim + vocab_size, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, num_answers),
        )

    def forward(self, objects, question, object_padding_mask=None, question_padding_mask=None):
        if isinstance(objects, torch.Tensor) and objects.dim() == 3 \
                and objects.shape[1] != self.num_slots:
            raise ValueError(f"objects must have shape (B, {self.num_slots}, {self.obj_dim}) "
                             f"(num_slots={self.num_slots}), got {tuple(objects.shape)}")
        objects, words, object_mask, question_mask = self.inputs(
            objects, question, object_padding_mask, question_padding_mask)
        if object_mask is not None:
            objects = objects * (~object_mask).unsqueeze(-1).to(objects.dtype)
        flat = objects.flatten(1)  # (B, N * obj_dim)
        bag = masked_sum(words, question_mask)  # (B, V): how often each word occurs
        return self.mlp(torch.cat([flat, bag], dim=-1))


class PooledLateFusion(SceneModel):
    """Late fusion: each object is encoded on its own and the scene is mean-pooled into one
    vector; the words are embedded and mean-pooled likewise; an MLP head reads both.

    The scene is summarised before the question is seen, so the summary cannot depend on
    which object the question names.
    """

    def __init__(self, obj_dim=OBJECT_DIM, vocab_size=VOCAB_SIZE, embed_dim=64,
                 num_answers=NUM_ANSWERS, use_object_mask=True):
        super().__init__(obj_dim, vocab_size, use_object_mask)
        self.obj_encoder = mlp(obj_dim, embed_dim, embed_dim)
        self.word_proj = nn.Linear(vocab_size, embed_dim)
        self.head = mlp(2 * embed_dim, embed_dim, num_answers)

    def forward(self, objects, question, object_padding_mask=None, question_padding_mask=None):
        objects, words, object_mask, question_mask = self.inputs(
            objects, question, object_padding_mask, question_padding_mask)
        scene = masked_mean(self.obj_encoder(objects), object_mask)  # (B, E)
        query = masked_mean(self.word_proj(words), question_mask)  # (B, E)
        return self.head(torch.cat([scene, query], dim=-1))


# ----------------------------------------------------------------------------- attention


class CrossAttentionBlock(nn.Module):
    """One attention hop in transformer form: the queries read the keys/values, then a
    feed-forward network, each with a residual connection and a LayerNorm (post-norm):

        x = LayerNorm(x + CrossAttn(x, kv));  x = LayerNorm(x + FFN(x))

    ``attention(dim, num_heads)`` builds the attention layer: any module with the call
    ``(query, kv, key_padding_mask) -> (B, N_q, dim)`` and its ``last_attn_weights`` (the
    notebook passes the student's own). It has no default: say which attention the block uses.
    """

    def __init__(self, dim, num_heads=4, ff_mult=2, attention=None):
        super().__init__()
        if attention is None:
            raise TypeError("CrossAttentionBlock needs attention=...: the class of its attention "
                            "layer, called as attention(dim, num_heads) (in the notebook: your "
                            "MaskedMultiHeadAttention)")
        self.attn = attention(dim, num_heads)
        self.norm_attn = nn.LayerNorm(dim)
        self.ff = mlp(dim, ff_mult * dim, dim)
        self.norm_ff = nn.LayerNorm(dim)

    def forward(self, x, kv, key_padding_mask=None):
        x = self.norm_attn(x + self.attn(x, kv, key_padding_mask))  # (B, N_q, dim)
        return self.norm_ff(x + self.ff(x))


class SceneCrossAttention(SceneModel):
    """Question-to-scene cross-attention with ``num_layers`` hops.

    Every word of the question is a query token; each hop lets the words read the encoded
    objects and updates them (``CrossAttentionBlock``); the words are then mean-pooled (over
    the non-padding ones) and an MLP answers. In one hop the colour word can fetch the object
    it names; only a second hop can look for objects relative to what the first one fetched.
    The words never read each other: only the final pooling combines them.

    ``attention_maps`` holds the weights of the last forward pass, one
    ``(B, heads, L, N)`` tensor (word queries over objects) per hop. ``attention`` builds each
    hop's attention layer (see ``CrossAttentionBlock``); it has no default: the scenes are
    padded, so it must mask, and the notebook passes the student's ``MaskedMultiHeadAttention``.
    """

    def __init__(self, obj_dim=OBJECT_DIM, vocab_size=VOCAB_SIZE, embed_dim=64, num_heads=4,
                 num_layers=1, num_answers=NUM_ANSWERS, use_object_mask=True,
                 attention=None):
        super().__init__(obj_dim, vocab_size, use_object_mask)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.obj_encoder = mlp(obj_dim, embed_dim, embed_dim)
        self.word_proj = nn.Linear(vocab_size, embed_dim)
        self.hops = nn.ModuleList(CrossAttentionBlock(embed_dim, num_heads, attention=attention)
                                  for _ in range(num_layers))
        self.head = mlp(embed_dim, embed_dim, num_answers)

    @property
    def attention_maps(self) -> list:
        return [hop.attn.last_attn_weights for hop in self.hops]

    def forward(self, objects, question, object_padding_mask=None, question_padding_mask=None):
        scene, text, object_mask, question_mask = self.token_streams(
            objects, question, object_padding_mask, question_padding_mask)  # (B, N, E), (B, L, E)
        for hop in self.hops:
            text = hop(text, scene, object_mask)  # (B, L, E): each word read the objects
        return self.head(masked_mean(text, question_mask))


class CoAttentionFusion(SceneModel):
    """Word tokens and object tokens through ``num_layers`` co-attention blocks; the two
    streams are then mean-pooled (over their non-padding tokens) and an MLP answers.

    ``block(dim, num_heads)`` builds each block: a ViLBERT co-attention block, each stream's
    queries reading the other stream's keys and values (``CrossAttentionBlock`` per direction),
    with the call ``(words, objects, word_padding_mask, object_padding_mask) -> (words',
    objects')``. It has no default: the notebook passes the student's own ``CoAttentionBlock``.
    """

    def __init__(self, obj_dim=OBJECT_DIM, vocab_size=VOCAB_SIZE, embed_dim=64, num_heads=4,
                 num_layers=1, num_answers=NUM_ANSWERS, use_object_mask=True, block=None):
        super().__init__(obj_dim, vocab_size, use_object_mask)
        if block is None:
            raise TypeError("CoAttentionFusion needs block=...: the class of its co-attention "
                            "block, called as block(dim, num_heads) (in the notebook: your "
                            "CoAttentionBlock)")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.obj_encoder = mlp(obj_dim, embed_dim, embed_dim)
        self.word_proj = nn.Linear(vocab_size, embed_dim)
        self.blocks = nn.ModuleList(block(embed_dim, num_heads) for _ in range(num_layers))
        self.head = mlp(2 * embed_dim, embed_dim, num_answers)

    def forward(self, objects, question, object_padding_mask=None, question_padding_mask=None):
        scene, text, object_mask, question_mask = self.token_streams(
            objects, question, object_padding_mask, question_padding_mask)  # (B, N, E), (B, L, E)
        for block in self.blocks:
            text, scene = block(text, scene, question_mask, object_mask)
        pooled = [masked_mean(text, question_mask), masked_mean(scene, object_mask)]
        return self.head(torch.cat(pooled, dim=-1))


# ----------------------------------------------------------------------------- relations


class RelationNetwork(SceneModel):
    """Relation Network (Santoro et al. 2017) on state descriptions:

        RN(O, q) = f( sum over valid pairs (i, j) of g([o_i; o_j; q]) )

    over every ordered pair of objects, ``i == j`` included; pairs with a padded object are
    left out of the sum. ``q`` is the question's bag of words (mean of its one-hot words).
    ``g``'s first layer on the concatenation is computed as ``W_l o_i + W_r o_j + W_q q``, the
    same linear map without building the ``(B, N, N, 2 obj_dim + vocab)`` concatenation. The
    sum (not a mean) lets ``f`` see how many pairs agree, which counting needs.
    """

    def __init__(self, obj_dim=OBJECT_DIM, vocab_size=VOCAB_SIZE, hidden_dim=64,
                 num_answers=NUM_ANSWERS, use_object_mask=True):
        super().__init__(obj_dim, vocab_size, use_object_mask)
        self.g_left = nn.Linear(obj_dim, hidden_dim)
        self.g_right = nn.Linear(obj_dim, hidden_dim, bias=False)
        self.g_question = nn.Linear(vocab_size, hidden_dim, bias=False)
        self.g_rest = nn.Sequential(
            nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
        )
        self.f = mlp(hidden_dim, hidden_dim, num_answers)

    def forward(self, objects, question, object_padding_mask=None, question_padding_mask=None):
        objects, words, object_mask, question_mask = self.inputs(
            objects, question, object_padding_mask, question_padding_mask)
        q = masked_mean(words, question_mask)  # (B, V)
        pairs = (self.g_left(objects)[:, :, None]  # (B, N, 1, H): object i
                 + self.g_right(objects)[:, None, :]  # (B, 1, N, H): object j
                 + self.g_question(q)[:, None, None])  # (B, 1, 1, H)
        relations = self.g_rest(pairs)  # (B, N, N, H)
        B, N, _, H = relations.shape
        pair_mask = None
        if object_mask is not None:  # a pair is padding when either object is
            pair_mask = (object_mask[:, :, None] | object_mask[:, None, :]).reshape(B, N * N)
        return self.f(masked_sum(relations.reshape(B, N * N, H), pair_mask))  # (B, A)
