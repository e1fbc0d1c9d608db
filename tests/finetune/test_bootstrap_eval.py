"""The bootstrap's rank measure: pair AUC per query (the reduced build's audio->image floor)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from omnivec.finetune.bootstrap_eval import _pair_auc  # noqa: E402

LABELS = ["a", "b", "a", "c"]


def test_pair_auc_is_one_when_every_right_item_outranks_every_wrong_one_and_zero_when_reversed():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.2], [0.1, 0.9, 0.2, 0.3]])
    assert _pair_auc(scores[:1], [{"a"}], LABELS) == 1.0
    assert _pair_auc(scores[1:], [{"a"}], LABELS) == 0.0
    assert _pair_auc(scores, [{"a"}, {"a"}], LABELS) == 0.5


def test_pair_auc_counts_order_per_pair_and_ties_as_half():
    # right items 0.6 and 0.2 against wrong 0.4 and 0.2: pairs (0.6>0.4, 0.6>0.2, 0.2<0.4, 0.2=0.2) -> 2.5 of 4
    assert _pair_auc(torch.tensor([[0.6, 0.4, 0.2, 0.2]]), [{"a"}], LABELS) == pytest.approx(2.5 / 4)


def test_queries_without_right_or_wrong_items_are_skipped():
    assert _pair_auc(torch.tensor([[0.5, 0.4, 0.3, 0.2]]), [{"z"}], LABELS) == 0.0  # no right item: no query counted
    assert _pair_auc(torch.tensor([[0.5, 0.4, 0.3, 0.2], [0.9, 0.1, 0.5, 0.2]]), [{"z"}, {"a"}], LABELS) == 1.0
