"""fusionlab.results: the per-seed and per-class summary that the notebook prints and the claim
tests measure."""

import pytest
import torch
from torch import nn

from fusionlab.data import make_splits
from fusionlab.results import SeedResults, format_table, summarize
from fusionlab.train import History


class Always(nn.Module):
    """Predicts one class for every sample."""

    def __init__(self, predicted: int, num_classes: int = 3):
        super().__init__()
        self.logits = nn.Parameter(torch.nn.functional.one_hot(
            torch.tensor(predicted), num_classes).float())

    def forward(self, img, txt):
        return self.logits.expand(img.shape[0], -1)  # (B, C)


@pytest.fixture(scope="module")
def test_set():
    return make_splits(seed=0, n_train=30, n_test=300)[1]


def test_summarize_takes_overall_accuracy_from_histories_and_per_class_from_models(test_set):
    models = [Always(0), Always(1)]
    histories = [History(train_loss=[1.0, 0.5], test_acc=[0.2, 0.4]),
                 History(train_loss=[1.0, 0.5], test_acc=[0.3, 0.8])]
    result = summarize(models, histories, test_set)
    assert result.accuracy.tolist() == pytest.approx([0.4, 0.8])
    assert result.per_class.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert result.mean == pytest.approx(0.6)
    assert result.std == pytest.approx(torch.tensor([0.4, 0.8]).std().item())
    assert result.class_mean.tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert result.class_std.tolist() == pytest.approx([2 ** -0.5, 2 ** -0.5, 0.0])


def test_one_test_set_per_seed(test_set):
    """Each model is evaluated on its own seed's test set (the claim tests draw one per seed)."""
    no_class_0 = (test_set.img_features[:3], test_set.txt_features[:3], torch.tensor([1, 1, 2]))
    result = summarize([Always(0), Always(0)], [History(test_acc=[0.5])] * 2,
                       [test_set, no_class_0])
    assert result.per_class.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="one per seed"):
        summarize([Always(0)], [History(test_acc=[0.5])], [test_set, no_class_0])


def test_a_single_seed_has_zero_spread(test_set):
    result = summarize([Always(2)], [History(test_acc=[0.7])], test_set)
    assert result.seeds == 1 and result.std == 0.0
    assert result.class_std.tolist() == [0.0, 0.0, 0.0]


def test_mismatched_models_and_histories_are_an_error(test_set):
    with pytest.raises(ValueError, match="one history per model"):
        summarize([Always(0)], [], test_set)


def test_format_table_has_a_row_per_model_with_mean_and_std():
    results = {
        "early": SeedResults(torch.tensor([0.98, 0.99]), torch.tensor([[1.0, 0.97], [0.99, 0.99]])),
        "committee": SeedResults(torch.tensor([0.5]), torch.tensor([[0.5, 0.5]])),
    }
    lines = format_table(results, "XOR data").splitlines()
    assert lines[0] == "XOR data: test accuracy, mean ± std over 2 seed(s)"
    assert lines[1].split() == ["model", "overall", "class", "0", "class", "1"]
    assert lines[3].split()[:4] == ["early", "0.985", "±", "0.007"]
    assert lines[4].split() == ["committee", "0.500", "±", "0.000", "0.500", "±", "0.000",
                                "0.500", "±", "0.000"]
