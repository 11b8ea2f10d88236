"""The experiments of Part 2, as small functions that the notebook and the claim tests share.

Each function takes the trained models of several seeds (one model per seed, each tested on its
own test set) and returns plain numbers: lists with one value per seed, so that a caller can
print the mean and the spread, and a test can check every seed.

    models = fit_seeds(make_model, trains, None, seeds, config, return_models=True)[1]
    accuracies = accuracy_per_type(models, tests)          # {"shape": [per seed], ...}
    report = padding_report(models, tests)                 # by number of padded slots

The notebook's budget (a 2-core CPU, about three minutes in all) decides the settings below:
``BINDING`` learns "what shape is X" in every attention model; ``MIX`` gives each of the six
question types a few hundred questions, too few for any model to learn the relational ones;
``RELATIONAL`` gives "what shape is closest to X" alone about 10,000 questions, enough for the
Relation Network to learn it (``benchmarks/PART2_MEASUREMENTS.md``).
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Sequence

import torch

from ..multiseed import fit_seeds
from ..train import TrainConfig, predict
from .scenes import ANSWER_ID, QUESTION_TYPES, SHAPES, Y_FEATURE, SortOfClevr, accuracy_by_type

COLUMNS = (*QUESTION_TYPES, "non-relational", "relational", "all")

# "what shape is X" questions only: 1000 per seed, 20 epochs (every attention model binds)
BINDING = TrainConfig(epochs=20, lr=3e-3, batch_size=64, progress=False)
BINDING_SCENES = 6000  # scenes drawn per seed; one in six asks "what shape is X"
# the six question types mixed: 300 questions per type, too few to learn them (see RELATIONAL),
# enough to see the shortcuts
MIX = TrainConfig(epochs=8, lr=3e-3, batch_size=64, progress=False)
MIX_SCENES = 1800
# the heads x layers grid: "what shape is X" again, on fewer scenes and epochs (9 models)
GRID = TrainConfig(epochs=10, lr=6e-3, batch_size=64, progress=False)
GRID_SCENES = 6000
TEST_SCENES = 1200
EMBED_DIM = 64
# "what shape is closest to X" alone, with enough questions: a sixth of 60,000 scenes (10,000
# questions per seed), 25 epochs; tested on 1000 questions per seed
RELATIONAL = TrainConfig(epochs=25, lr=3e-3, batch_size=64, progress=False)
RELATIONAL_SCENES = 60_000
RELATIONAL_TEST_SCENES = 6000


def only(dataset: SortOfClevr, question_type: str) -> SortOfClevr:
    """The samples of ``dataset`` that ask ``question_type`` (a view with the same attributes,
    so that ``describe``, ``accuracy_by_type`` and the masks keep working)."""
    rows = dataset.question_type == QUESTION_TYPES.index(question_type)
    subset = copy.copy(dataset)
    for name in ("objects", "object_mask", "question", "question_mask", "answer",
                 "question_type", "subject", "num_objects"):
        setattr(subset, name, getattr(dataset, name)[rows])
    subset.n_samples = int(rows.sum())
    return subset


def scene_splits(seeds: Sequence[int], n_train: int, n_test: int = TEST_SCENES,
                 question_type: str | None = None, **kwargs):
    """One (train, test) pair per seed, each from its own data seed (``2 s`` and ``2 s + 1``,
    as ``fusionlab.part2.scenes.make_scene_splits``); ``question_type`` keeps that type only."""
    trains = [SortOfClevr(n_train, seed=2 * s, **kwargs) for s in seeds]
    tests = [SortOfClevr(n_test, seed=2 * s + 1, **kwargs) for s in seeds]
    if question_type is not None:
        trains = [only(d, question_type) for d in trains]
        tests = [only(d, question_type) for d in tests]
    return trains, tests


def eight_objects(seeds: Sequence[int], n_test: int = TEST_SCENES,
                  question_type: str | None = None):
    """Test scenes of exactly 8 objects (8 slots, no padding), one set per seed."""
    tests = [SortOfClevr(n_test, min_objects=8, max_objects=8, seed=10_000 + s) for s in seeds]
    return tests if question_type is None else [only(d, question_type) for d in tests]


def with_junk_in_padding(dataset: SortOfClevr, seed: int = 0) -> SortOfClevr:
    """A copy of ``dataset`` whose padded slots hold random numbers in [0, 1) instead of zeros
    (the mask is unchanged): a model that respects the mask answers exactly as before."""
    g = torch.Generator().manual_seed(seed)
    junk = copy.copy(dataset)
    noise = torch.rand(dataset.objects.shape, generator=g)
    junk.objects = torch.where(dataset.object_mask[..., None], noise, dataset.objects)
    return junk


def accuracy_per_type(models, tests) -> dict[str, list[float]]:
    """{column: [accuracy of each seed's model on its own test set]}; a type that a test set
    does not ask is left out."""
    per_seed = [accuracy_by_type(predict(m, t), t) for m, t in zip(models, tests)]
    return {c: [acc[c] for acc in per_seed] for c in COLUMNS
            if all(acc[c] == acc[c] for acc in per_seed)}  # NaN: type not asked


@torch.no_grad()
def attention_on_padding(model, data: SortOfClevr) -> torch.Tensor:
    """Per sample ``(n,)``: the attention weight that the first hop puts on padded slots,
    averaged over heads and over the question's words (0 when the mask is used)."""
    model.eval()
    model(*data.tensors()[:-1])
    weights = model.attention_maps[0].mean(dim=1)  # (n, L, N)
    on_padding = (weights * data.object_mask[:, None, :]).sum(dim=-1)  # (n, L)
    words = (~data.question_mask).float()
    return (on_padding * words).sum(dim=1) / words.sum(dim=1)


def padding_report(models, tests) -> dict[int, dict[str, list[float]]]:
    """{padded slots: {"acc": [per seed], "mass": [per seed]}}: accuracy and the attention
    mass on padding (``attention_on_padding``), by the number of padded slots."""
    report: dict[int, dict[str, list[float]]] = {}
    for model, test in zip(models, tests):
        correct = (predict(model, test) == test.answer).float()
        mass = attention_on_padding(model, test)
        padded = test.object_mask.sum(dim=1)
        for p in sorted(set(padded.tolist())):
            rows = padded == p
            entry = report.setdefault(p, {"acc": [], "mass": []})
            entry["acc"].append(correct[rows].mean().item())
            entry["mass"].append(mass[rows].mean().item())
    return report


def train_models(factories, trains, seeds: Sequence[int], config: TrainConfig,
                 tests=None, curves: dict | None = None) -> dict:
    """{name: [the trained model of each seed]} for each ``name: make_model`` of
    ``factories``, the seeds side by side (``fit_seeds``); a model whose code raises
    ``NotImplementedError`` (an exercise not done yet) is skipped with a message.

    With ``tests`` (one test set per seed), each model is tested after every epoch and
    ``curves[name]`` receives the learning curves: one list of test accuracies per seed. With
    ``config.progress``, each model's name is printed above its progress bar."""
    trained = {}
    for name, make in factories.items():
        if config.progress:
            print(name)
        try:
            histories, trained[name] = fit_seeds(make, trains, tests, seeds, config,
                                                 return_models=True)
        except NotImplementedError:
            print(f"{name}: not implemented yet, skipped (finish the TODOs in section 5, "
                  "then rerun)")
            continue
        if curves is not None:
            curves[name] = [h.test_acc for h in histories]
    return trained


def majority_of_the_others(dataset: SortOfClevr) -> torch.Tensor:
    """The answer ids ``(n,)`` of the shortcut "the majority shape among the objects other than
    X": it reads the scene's shapes and the subject's slot, but no position. Ties go to the
    first shape (``"square"``)."""
    shapes = dataset.objects[..., Y_FEATURE + 1:]  # (n, S, 2): one-hot, zeros on padding
    others = shapes.sum(dim=1) - shapes[torch.arange(len(dataset)), dataset.subject]  # (n, 2)
    return ANSWER_ID[SHAPES[0]] + (others[:, 1] > others[:, 0]).long()


def shortcut_accuracy(tests) -> list[float]:
    """Accuracy of ``majority_of_the_others`` on each seed's test set."""
    return [(majority_of_the_others(t) == t.answer).float().mean().item() for t in tests]


def mean_std(values: Sequence[float]) -> str:
    """``"0.912 ± 0.031"``: the mean and the standard deviation over seeds."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {spread:.3f}"
