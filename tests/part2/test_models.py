"""fusionlab.part2.models: shapes, errors, padding and order invariance, mask polarity,
gradient flow, stacking in fusionlab.multiseed, and a short training run.

The attention models are built on the grader's trusted attention and co-attention block
(``autograder.hidden.part2.formulas``): the package holds no answer to a TODO."""

import pytest
import torch

from autograder.hidden.part2.formulas import CoAttention, MaskedAttention
from fusionlab.multiseed import stack_models
from fusionlab.part2.models import (
    CoAttentionFusion,
    CrossAttentionBlock,
    FlatEarlyFusion,
    PooledLateFusion,
    RelationNetwork,
    SceneCrossAttention,
)
from fusionlab.part2.scenes import NUM_ANSWERS, OBJECT_DIM, VOCAB_SIZE, SortOfClevr

MODELS = {
    "flat": lambda **kw: FlatEarlyFusion(num_slots=8, **kw),
    "pooled": lambda **kw: PooledLateFusion(**kw),
    "cross1": lambda **kw: SceneCrossAttention(num_layers=1, num_heads=1, attention=MaskedAttention,
                                              **kw),
    "cross2": lambda **kw: SceneCrossAttention(num_layers=2, num_heads=4, attention=MaskedAttention,
                                              **kw),
    "coattention": lambda **kw: CoAttentionFusion(num_layers=2, num_heads=2, block=CoAttention,
                                                  **kw),
    "rn": lambda **kw: RelationNetwork(**kw),
}
ORDER_INVARIANT = ("pooled", "cross1", "cross2", "coattention", "rn")


@pytest.fixture(scope="module")
def scenes():
    ds = SortOfClevr(n_samples=24, min_objects=3, max_objects=6, num_slots=8, seed=0)
    return ds.tensors()[:-1]  # objects, question, object_mask, question_mask


@pytest.fixture(params=list(MODELS))
def name(request):
    return request.param


def build(name, **kwargs):
    torch.manual_seed(0)
    return MODELS[name](**kwargs).eval()


def test_output_is_one_row_of_answer_logits(name, scenes):
    out = build(name)(*scenes)
    assert out.shape == (24, NUM_ANSWERS) and torch.isfinite(out).all()


def test_junk_in_padded_slots_changes_nothing(name, scenes):
    objects, question, object_mask, question_mask = scenes
    model = build(name)
    expected = model(*scenes)
    junk = torch.randn(objects.shape, generator=torch.Generator().manual_seed(1)) * 100
    noisy = torch.where(object_mask[..., None], junk, objects)
    assert not torch.equal(noisy, objects)
    assert torch.allclose(model(noisy, question, object_mask, question_mask), expected,
                          atol=1e-5)


def test_padded_words_change_nothing(name, scenes):
    objects, question, object_mask, question_mask = scenes
    model = build(name)
    junk = torch.where(question_mask, torch.randint_like(question, 1, VOCAB_SIZE), question)
    assert not torch.equal(junk, question)
    assert torch.allclose(model(objects, junk, object_mask, question_mask), model(*scenes),
                          atol=1e-5)


def test_mask_polarity_true_marks_padding(name, scenes):
    """With True on the real objects instead, the answers change: the mask is not ignored and
    True means padding."""
    objects, question, object_mask, question_mask = scenes
    model = build(name)
    expected = model(*scenes)
    some_real = object_mask.clone()
    some_real[:, 0] = True  # hide the first real object of every scene
    assert not torch.allclose(model(objects, question, some_real, question_mask), expected,
                              atol=1e-4)


def test_without_the_mask_the_padding_counts(name, scenes):
    objects, question, object_mask, question_mask = scenes
    masked = build(name)
    unmasked = build(name, use_object_mask=False)
    unmasked.load_state_dict(masked.state_dict())
    junk = torch.where(object_mask[..., None], torch.ones_like(objects), objects)
    assert not torch.allclose(unmasked(junk, question, object_mask, question_mask),
                              masked(junk, question, object_mask, question_mask), atol=1e-4)


def test_extra_padding_slots_change_nothing(name, scenes):
    if name == "flat":
        pytest.skip("flat early fusion has one set of weights per slot: its width is fixed")
    objects, question, object_mask, question_mask = scenes
    model = build(name)
    wider = torch.cat([objects, torch.full((24, 3, OBJECT_DIM), 7.0)], dim=1)
    wider_mask = torch.cat([object_mask, torch.ones(24, 3, dtype=torch.bool)], dim=1)
    assert torch.allclose(model(wider, question, wider_mask, question_mask), model(*scenes),
                          atol=1e-5)


def test_object_order(name, scenes):
    objects, question, object_mask, question_mask = scenes
    model = build(name)
    order = torch.randperm(8, generator=torch.Generator().manual_seed(3))
    shuffled = model(objects[:, order], question, object_mask[:, order], question_mask)
    same = torch.allclose(shuffled, model(*scenes), atol=1e-5)
    assert same == (name in ORDER_INVARIANT)


def test_gradients_reach_every_parameter(name, scenes):
    model = build(name).train()
    labels = torch.arange(24) % NUM_ANSWERS
    torch.nn.functional.cross_entropy(model(*scenes), labels).backward()
    for param_name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("bad, message", [
    ((torch.zeros(4, 8, OBJECT_DIM + 1),),
     r"objects must have shape \(B, N, 12\), got \(4, 8, 13\)"),
    ((torch.zeros(4, OBJECT_DIM),), r"objects must have shape \(B, N, 12\), got \(4, 12\)"),
    ((None, torch.zeros(4, 7)), r"question must have shape \(B, L\) of integer word ids"),
    ((None, torch.zeros(4, 7, 2, dtype=torch.long)), r"question must have shape \(B, L\)"),
    ((None, torch.zeros(3, 7, dtype=torch.long)), "batch size"),
    ((None, torch.full((4, 7), VOCAB_SIZE)), r"word ids must lie in \[0, 24\)"),
    ((None, None, torch.zeros(4, 7, dtype=torch.bool)),
     r"object_padding_mask must have shape \(B, N\) = \(4, 8\)"),
    ((None, None, torch.zeros(4, 8)), "bool"),
    ((None, None, None, torch.zeros(4, 8, dtype=torch.bool)),
     r"question_padding_mask must have shape \(B, N\) = \(4, 7\)"),
])
def test_bad_inputs_raise_value_errors_naming_the_shape(name, bad, message):
    good = [torch.zeros(4, 8, OBJECT_DIM), torch.zeros(4, 7, dtype=torch.long),
            torch.zeros(4, 8, dtype=torch.bool), torch.zeros(4, 7, dtype=torch.bool)]
    args = [b if b is not None else g for b, g in zip(bad, good)] + good[len(bad):]
    with pytest.raises(ValueError, match=message):
        build(name)(*args)


def test_flat_early_fusion_names_its_fixed_width():
    with pytest.raises(ValueError, match=r"\(B, 6, 12\) \(num_slots=6\), got \(2, 8, 12\)"):
        FlatEarlyFusion(num_slots=6)(torch.zeros(2, 8, OBJECT_DIM),
                                     torch.zeros(2, 7, dtype=torch.long))


def test_attention_maps_are_distributions_over_the_real_objects(scenes):
    objects, question, object_mask, question_mask = scenes
    model = build("cross2")
    model(*scenes)
    maps = model.attention_maps
    assert len(maps) == 2
    for weights in maps:
        assert weights.shape == (24, 4, 7, 8)  # (B, heads, words, objects)
        assert torch.allclose(weights.sum(-1), torch.ones(24, 4, 7))
        assert (weights[object_mask[:, None, None, :].expand_as(weights)] == 0).all()
    unmasked = build("cross2", use_object_mask=False)
    unmasked(*scenes)
    on_padding = unmasked.attention_maps[0][object_mask[:, None, None, :].expand(24, 4, 7, 8)]
    assert on_padding.sum() > 0


def test_the_trusted_co_attention_reads_the_inputs_in_both_directions():
    torch.manual_seed(0)
    block = CoAttention(8, num_heads=2).eval()
    words, objects = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    new_words, new_objects = block(words, objects)
    assert new_words.shape == (2, 3, 8) and new_objects.shape == (2, 5, 8)
    # each direction is a function of its own queries and the *input* of the other stream
    assert torch.allclose(new_words, block.words_read_objects(words, objects))
    assert torch.allclose(new_objects, block.objects_read_words(objects, words))
    changed_words, _ = block(words, objects + 1.0)
    assert not torch.allclose(changed_words, new_words)


def test_the_attention_and_block_factories_are_the_ones_used():
    """The notebook runs its models with the student's own attention and co-attention block:
    the factories must build every hop and every block, not just be accepted."""

    class CountingAttention(MaskedAttention):
        calls = 0

        def forward(self, query, kv, key_padding_mask=None):
            CountingAttention.calls += 1
            return super().forward(query, kv, key_padding_mask)

    class TaggedBlock(CoAttention):
        pass

    objects, question = torch.randn(2, 4, OBJECT_DIM), torch.zeros(2, 3, dtype=torch.long)
    SceneCrossAttention(num_layers=2, attention=CountingAttention)(objects, question)
    assert CountingAttention.calls == 2  # one per hop
    model = CoAttentionFusion(num_layers=2, block=TaggedBlock)
    assert [type(b) for b in model.blocks] == [TaggedBlock, TaggedBlock]
    CountingAttention.calls = 0
    CoAttentionFusion(num_layers=1, block=lambda d, h: CoAttention(
        d, h, attention=CountingAttention))(objects, question)
    assert CountingAttention.calls == 2  # words read objects, objects read words


def test_the_blocks_say_which_attention_they_need():
    """No default answer: a block or a cross-attention model without its attention, or a
    co-attention model without its block, is a TypeError that names the missing argument."""
    with pytest.raises(TypeError, match=r"CrossAttentionBlock needs attention="):
        CrossAttentionBlock(16, 2)
    with pytest.raises(TypeError, match=r"CrossAttentionBlock needs attention="):
        SceneCrossAttention()
    with pytest.raises(TypeError, match=r"CoAttentionFusion needs block="):
        CoAttentionFusion()
    assert isinstance(CrossAttentionBlock(16, 2, attention=MaskedAttention).attn, MaskedAttention)


@pytest.mark.parametrize("bad", [0, -1])
def test_layer_counts_must_be_positive(bad):
    with pytest.raises(ValueError, match="num_layers"):
        SceneCrossAttention(num_layers=bad, attention=MaskedAttention)
    with pytest.raises(ValueError, match="num_layers"):
        CoAttentionFusion(num_layers=bad, block=CoAttention)


def test_every_model_stacks_for_multiseed(name, scenes):
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(MODELS[name]())
    stack_models(models, tuple(t[:6] for t in scenes))  # raises if the ensemble disagrees


@pytest.mark.slow
def test_cross_attention_learns_to_bind_a_colour_word_to_its_object(seed=0):
    """On "what shape is X" alone, reading the scene's majority shape gives about 0.73; only
    attention that finds object X answers (nearly) everything. Measured with seeds 0-9 (data
    and weights): final accuracy 0.98 to 1.00 after 20 epochs, after a plateau near 0.73 that
    lasts 5 to 10 epochs."""
    from fusionlab.train import fit

    train = SortOfClevr(n_samples=6000, seed=2 * seed)
    test = SortOfClevr(n_samples=1200, seed=2 * seed + 1)
    shape_questions = lambda ds: ds.subset(ds.question_type == 0)  # noqa: E731
    torch.manual_seed(seed)
    model = SceneCrossAttention(num_layers=1, attention=MaskedAttention)
    history = fit(model, shape_questions(train), shape_questions(test), epochs=20, lr=3e-3,
                  progress=False)
    assert history.final_acc > 0.95, history.test_acc
