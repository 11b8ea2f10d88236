"""Evidence of Part 2's exercises: what masked multi-head attention and the co-attention block
do, recorded as plain arrays on inputs drawn from a seed (``fusionlab.evidence``'s design).

A graded cell of the Part 2 notebook writes it for the grader::

    from fusionlab import evidence_part2
    evidence_part2.attention("attn_equivalence", MaskedMultiHeadAttention)
    evidence_part2.attention("attn_accuracy", MaskedMultiHeadAttention, train=True)
    evidence_part2.coattention("coatt_equivalence", CoAttentionBlock)
    evidence_part2.pairs("pairs_sum", relation_pair_sum)

and the self-checks (``fusionlab.check_part2``) collect the same evidence in the student's
kernel. The seed is the grader's request (``grading_request.json``,
``fusionlab.evidence.read_request``) in a graded cell and ``SEED`` in a self-check; the grader
recomputes every input from it (``attention_inputs``, ``coattention_inputs``) and every
expected output from the exported weights.

An evidence dict maps names to arrays: ``status``; ``types``/``params``/``bases``/``attrs``
(JSON text); ``state/<name>``, the ``state_dict`` after every parameter was moved off its
initial value; ``out/<case>``, outputs on the inputs of the cases below; ``weights/mask``, the
``last_attn_weights`` of the masked call; ``grad/<name>``; ``trained/<name>``, the weights of
``SceneCrossAttention(attention=<the class>)`` after the short training of ``TRAINING`` (the
accuracy cell only: the grader evaluates them on questions of its own); ``error/<key>``, why
``<key>`` is missing.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from .evidence import (
    build_module,
    describe_error,
    export,
    isolated,
    record,
    record_state,
    to_array,
)

SEED = 20240601  # the self-checks' seed
DIM, HEADS = 32, 4
# (dim, heads, B, N_q, N_kv) of the shape cases; a case of another dim builds a second module
ATTENTION_SHAPE_CASES = ((DIM, HEADS, 1, 1, 1), (DIM, HEADS, 2, 3, 5), (16, 2, 2, 2, 3))
# (B, L, N) of the co-attention shape cases
COATTENTION_SHAPE_CASES = ((2, 7, 5), (1, 1, 1))
# (B, N, H) of the pair-sum shape cases
PAIRS_SHAPE_CASES = ((1, 1, 4), (2, 4, 16))
JUNK_SCALE = 100.0  # what the padded slots are filled with in the padding tests
# The accuracy evidence: SceneCrossAttention(attention=<the class>) trained on the "what shape
# is X" questions of SortOfClevr (the binding task: find the object a colour word names).
# Measured over 20 seeds by autograder/measure_part2_thresholds.py (autograder/README.md).
TRAINING = dict(n_scenes=6000, embed_dim=64, num_heads=4, epochs=15, lr=5e-3, batch_size=64)


def _gen(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7919 + 200 + stream)


# ----------------------------------------------------------------------------- inputs

def attention_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the attention evidence is collected on (the grader recomputes them).

    Three samples of 4 queries and 6 keys: no padding, the last two keys padded, and keys 1
    and 4 padded (so a mask that only works for trailing padding shows)."""
    g = _gen(seed, 1)
    x = {"query": torch.randn(3, 4, DIM, generator=g), "kv": torch.randn(3, 6, DIM, generator=g)}
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[1, 4:] = True
    mask[2, [1, 4]] = True
    x["mask"] = mask
    junk = JUNK_SCALE * torch.randn(3, 6, DIM, generator=g)
    x["kv_junk"] = torch.where(mask[..., None], junk, x["kv"])
    x["perm"] = torch.randperm(6, generator=g)
    x["qperm"] = torch.randperm(4, generator=g)
    for i, (d, _, B, n_q, n_kv) in enumerate(ATTENTION_SHAPE_CASES):
        x[f"shape{i}/query"] = torch.randn(B, n_q, d, generator=g)
        x[f"shape{i}/kv"] = torch.randn(B, n_kv, d, generator=g)
    x["grad/projection"] = torch.randn(3, 4, DIM, generator=g)
    return x


def coattention_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the co-attention evidence is collected on (the grader recomputes them).
    5 words and 6 objects, so that swapped masks do not even fit."""
    g = _gen(seed, 2)
    x = {"words": torch.randn(3, 5, DIM, generator=g),
         "objects": torch.randn(3, 6, DIM, generator=g)}
    word_mask = torch.zeros(3, 5, dtype=torch.bool)
    word_mask[1, 3:] = True
    word_mask[2, 4] = True
    object_mask = torch.zeros(3, 6, dtype=torch.bool)
    object_mask[0, 3:] = True
    object_mask[2, [2, 5]] = True
    x["word_mask"], x["object_mask"] = word_mask, object_mask
    x["words_junk"] = torch.where(word_mask[..., None],
                                  JUNK_SCALE * torch.randn(3, 5, DIM, generator=g), x["words"])
    x["objects_junk"] = torch.where(object_mask[..., None],
                                    JUNK_SCALE * torch.randn(3, 6, DIM, generator=g), x["objects"])
    for i, (B, L, N) in enumerate(COATTENTION_SHAPE_CASES):
        x[f"shape{i}/words"] = torch.randn(B, L, DIM, generator=g)
        x[f"shape{i}/objects"] = torch.randn(B, N, DIM, generator=g)
    x["grad/words"] = torch.randn(3, 5, DIM, generator=g)
    x["grad/objects"] = torch.randn(3, 6, DIM, generator=g)
    return x


def pairs_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the pair-sum evidence is collected on (the grader recomputes them): the
    relations ``g(o_i, o_j)`` ``(3, 5, 5, 8)`` of every ordered pair of 5 slots; sample 0 has no
    padding, sample 1 its last two slots, sample 2 slot 1."""
    g = _gen(seed, 3)
    x = {"relations": torch.randn(3, 5, 5, 8, generator=g)}
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[1, 3:] = True
    mask[2, 1] = True
    x["mask"] = mask
    pair_padding = (mask[:, :, None] | mask[:, None, :])[..., None]  # (3, 5, 5, 1)
    x["relations_junk"] = torch.where(
        pair_padding, JUNK_SCALE * torch.randn(3, 5, 5, 8, generator=g), x["relations"])
    for i, (B, N, H) in enumerate(PAIRS_SHAPE_CASES):
        x[f"shape{i}"] = torch.randn(B, N, N, H, generator=g)
    return x


def binding_data(seed: int, n_scenes: int, objects: tuple[int, int] = (3, 6),
                 num_slots: int | None = None):
    """The "what shape is X" questions of ``n_scenes`` Sort-of-CLEVR samples drawn from
    ``seed``, with ``objects`` = (min, max) objects in ``num_slots`` slots (default: max):
    ``(objects, question, object_mask, question_mask, answer)``."""
    from .scenes import QUESTION_TYPES, SortOfClevr

    ds = SortOfClevr(n_samples=n_scenes, seed=seed, min_objects=objects[0],
                     max_objects=objects[1], num_slots=num_slots)
    return ds.subset(ds.question_type == QUESTION_TYPES.index("shape"))


def training_data(seed: int):
    """The training set of the accuracy evidence (the grader evaluates on other scenes)."""
    return binding_data(2 * seed, TRAINING["n_scenes"])


# ----------------------------------------------------------------------------- helpers

def _structure(ev: dict, module: nn.Module) -> None:
    ev["types"] = np.array(json.dumps(
        {name: type(child).__name__ for name, child in module.named_children()}))
    ev["params"] = np.array(json.dumps([n for n, _ in module.named_parameters()]))
    ev["bases"] = np.array(json.dumps([c.__name__ for c in type(module).__mro__]))
    ev["modules"] = np.array(json.dumps(sorted({type(m).__name__ for m in module.modules()})))


def _perturb(module: nn.Module, seed: int) -> None:
    """Move every parameter off its initial value (a LayerNorm at ones and zeros could hide a
    mistake)."""
    g = _gen(seed, 9)
    with torch.no_grad():
        for _, param in module.named_parameters():
            param.add_(0.2 * torch.randn(tuple(param.shape), generator=g))


def _gradients(ev: dict, module: nn.Module, loss_of) -> None:
    module.zero_grad(set_to_none=True)
    try:
        loss_of().backward()
    except Exception as error:  # noqa: BLE001 (the student's code can raise anything)
        ev["error/grad"] = np.array(f"backward raised {describe_error(error)}")
        return
    for name, param in module.named_parameters():
        grad = param.grad
        ev[f"grad/{name}"] = to_array(grad) if grad is not None else np.zeros(
            tuple(param.shape), dtype=np.float32)
    module.zero_grad(set_to_none=True)


def _bad_input(ev: dict, call) -> None:
    try:
        call()
        ev["bad_input"] = np.array("no error")
    except ValueError as error:
        ev["bad_input"] = np.array(f"ValueError: {error}")
    except Exception as error:  # noqa: BLE001
        ev["bad_input"] = np.array(describe_error(error))


# ----------------------------------------------------------------------------- collection

def collect_attention(cls, seed: int = SEED, train: bool = False) -> dict:
    """Evidence on a ``MaskedMultiHeadAttention`` class; never raises."""
    ev: dict = {}
    name = getattr(cls, "__name__", repr(cls))
    x = attention_inputs(seed)
    q, kv, mask = x["query"], x["kv"], x["mask"]
    with isolated(seed):
        module = build_module(ev, lambda: cls(DIM, num_heads=HEADS),
                              f"{name}({DIM}, num_heads={HEADS})", seed)
        if module is None:
            return ev
        try:
            _structure(ev, module)
            ev["attrs"] = np.array(json.dumps({a: getattr(module, a, None) for a in
                                               ("num_heads", "head_dim")}, default=str))
            _perturb(module, seed)
            record_state(ev, "state/", module)
        except Exception as error:  # noqa: BLE001 (e.g. a property that raises)
            ev["error/state"] = np.array(describe_error(error))
        module.eval()
        with torch.no_grad():
            for i, (d, h, *_) in enumerate(ATTENTION_SHAPE_CASES):
                m = module
                if d != DIM:
                    torch.manual_seed(seed + 1)
                    try:
                        m = cls(d, num_heads=h).eval()
                    except Exception as error:  # noqa: BLE001
                        ev[f"error/out/shape{i}"] = np.array(
                            f"{name}({d}, num_heads={h}) raised {describe_error(error)}")
                        continue
                if record(ev, f"out/shape{i}", lambda m=m, i=i: m(
                        x[f"shape{i}/query"], x[f"shape{i}/kv"])) is not None:
                    weights = getattr(m, "last_attn_weights", None)
                    if isinstance(weights, torch.Tensor):
                        ev[f"weights/shape{i}"] = to_array(weights)
            record(ev, "out/plain", lambda: module(q, kv))
            if record(ev, "out/mask", lambda: module(q, kv, mask)) is not None:
                weights = getattr(module, "last_attn_weights", None)
                if isinstance(weights, torch.Tensor):
                    ev["weights/mask"] = to_array(weights)
            record(ev, "out/junk", lambda: module(q, x["kv_junk"], mask))
            perm, qperm = x["perm"], x["qperm"]
            record(ev, "out/perm", lambda: module(q, kv[:, perm], mask[:, perm]))
            record(ev, "out/qperm", lambda: module(q[:, qperm], kv, mask))
            # sample 1 with its padded keys left out, and with only them
            record(ev, "out/kept", lambda: module(q[1:2], kv[1:2, :4]))
            record(ev, "out/pads_only", lambda: module(q[1:2], kv[1:2, 4:]))
        module.train()

        def loss():
            out = module(q, kv, mask)
            weights = getattr(module, "last_attn_weights", None)
            if isinstance(weights, torch.Tensor):
                ev["weights_requires_grad"] = np.array(bool(weights.requires_grad))
            return (out * x["grad/projection"]).sum()

        _gradients(ev, module, loss)
        _bad_input(ev, lambda: module(torch.randn(2, 3, DIM - 1), torch.randn(2, 4, DIM - 1)))
        if train:
            _train(ev, cls, seed)
    return ev


def _train(ev: dict, cls, seed: int) -> None:
    from .scene_models import SceneCrossAttention
    from .train import TrainConfig, fit

    t = TRAINING
    try:
        torch.manual_seed(seed)
        model = SceneCrossAttention(embed_dim=t["embed_dim"], num_heads=t["num_heads"],
                                    attention=cls)
        config = TrainConfig(epochs=t["epochs"], lr=t["lr"], batch_size=t["batch_size"],
                             seed=seed, device="cpu", progress=False, num_threads=1)
        fit(model, training_data(seed), None, config)
        record_state(ev, "trained/", model)
    except NotImplementedError:
        ev["error/trained"] = np.array("NotImplementedError: not implemented yet")
    except Exception as error:  # noqa: BLE001
        ev["error/trained"] = np.array(f"training failed: {describe_error(error)}")


def _pair(ev: dict, key: str, compute) -> None:
    """Record a call that should return ``(words', objects')`` as ``key/words``,
    ``key/objects``, or ``error/key`` with the reason."""
    try:
        out = compute()
    except NotImplementedError:
        ev[f"error/{key}"] = np.array("NotImplementedError: not implemented yet")
        return
    except Exception as error:  # noqa: BLE001
        ev[f"error/{key}"] = np.array(describe_error(error))
        return
    if not (isinstance(out, (tuple, list)) and len(out) == 2
            and all(isinstance(t, torch.Tensor) for t in out)):
        ev[f"error/{key}"] = np.array(f"returned a {type(out).__name__}, not a tuple (words', "
                                      "objects') of two tensors")
        return
    ev[f"{key}/words"], ev[f"{key}/objects"] = to_array(out[0]), to_array(out[1])


def collect_coattention(cls, seed: int = SEED) -> dict:
    """Evidence on a ``CoAttentionBlock`` class; never raises."""
    ev: dict = {}
    name = getattr(cls, "__name__", repr(cls))
    x = coattention_inputs(seed)
    words, objects, wm, om = x["words"], x["objects"], x["word_mask"], x["object_mask"]
    with isolated(seed):
        module = build_module(ev, lambda: cls(DIM, num_heads=HEADS),
                              f"{name}({DIM}, num_heads={HEADS})", seed)
        if module is None:
            return ev
        try:
            _structure(ev, module)
            attention = {}
            for attr in ("words_read_objects", "objects_read_words"):
                inner = getattr(getattr(module, attr, None), "attn", None)
                if inner is not None:
                    attention[attr] = type(inner).__name__
            ev["attention_types"] = np.array(json.dumps(attention))
            _perturb(module, seed)
            record_state(ev, "state/", module)
        except Exception as error:  # noqa: BLE001
            ev["error/state"] = np.array(describe_error(error))
        module.eval()
        with torch.no_grad():
            for i, _ in enumerate(COATTENTION_SHAPE_CASES):
                _pair(ev, f"out/shape{i}", lambda i=i: module(x[f"shape{i}/words"],
                                                              x[f"shape{i}/objects"]))
            inner = getattr(getattr(module, "words_read_objects", None), "attn", None)
            if isinstance(inner, nn.Module):  # which attention the block is built on
                record(ev, "sub/attn", lambda: inner(words, objects, om))
            _pair(ev, "out/plain", lambda: module(words, objects))
            _pair(ev, "out/mask", lambda: module(words, objects, wm, om))
            _pair(ev, "out/junk_objects", lambda: module(words, x["objects_junk"], wm, om))
            _pair(ev, "out/junk_words", lambda: module(x["words_junk"], objects, wm, om))
        module.train()

        def loss():
            new_words, new_objects = module(words, objects, wm, om)
            return (new_words * x["grad/words"]).sum() + (new_objects * x["grad/objects"]).sum()

        _gradients(ev, module, loss)
    return ev


def collect_pairs(fn, seed: int = SEED) -> dict:
    """Evidence on a ``relation_pair_sum`` function; never raises."""
    ev: dict = {"status": np.array("ok")}
    x = pairs_inputs(seed)
    rel, mask = x["relations"], x["mask"]
    with isolated(seed), torch.no_grad():
        for i, (B, N, _) in enumerate(PAIRS_SHAPE_CASES):
            shape_mask = torch.zeros(B, N, dtype=torch.bool)
            shape_mask[:, N - 1:] = N > 1
            record(ev, f"out/shape{i}", lambda i=i, m=shape_mask: fn(x[f"shape{i}"].clone(), m))
        record(ev, "out/plain", lambda: fn(rel.clone(), None))
        record(ev, "out/mask", lambda: fn(rel.clone(), mask))
        record(ev, "out/junk", lambda: fn(x["relations_junk"].clone(), mask))
        record(ev, "out/kept", lambda: fn(rel[1:2, :3, :3].clone(), None))  # sample 1, no pads
        _bad_input(ev, lambda: fn(torch.randn(2, 3, 4, 8), torch.zeros(2, 3, dtype=torch.bool)))
    return ev


# ----------------------------------------------------------------------------- graded cells

def attention(grade_id: str, cls, train: bool = False) -> None:
    """Write the evidence of graded cell ``grade_id`` on a ``MaskedMultiHeadAttention``."""
    export(grade_id, collect_attention, cls, train=train)


def pairs(grade_id: str, fn) -> None:
    """Write the evidence of graded cell ``grade_id`` on a ``relation_pair_sum`` function."""
    export(grade_id, collect_pairs, fn)


def coattention(grade_id: str, cls) -> None:
    """Write the evidence of graded cell ``grade_id`` on a ``CoAttentionBlock``."""
    export(grade_id, collect_coattention, cls)
