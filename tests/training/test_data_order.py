"""The stage batch order: deterministic, epoch reshuffles, sharding across processes."""

from __future__ import annotations

import pytest
import torch

from workbench.training.batch_order import StageBatchSampler, epoch_permutation


def test_order_is_a_function_of_seed_stage_epoch():
    a = epoch_permutation(50, 0, 1, 0)
    assert torch.equal(a, epoch_permutation(50, 0, 1, 0))
    assert not torch.equal(a, epoch_permutation(50, 0, 2, 0))
    assert not torch.equal(a, epoch_permutation(50, 1, 1, 0))
    assert not torch.equal(a, epoch_permutation(50, 0, 1, 1))
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(a, epoch_permutation(50, 0, 1, 0))


def test_batches_cover_epochs_and_resume_slices():
    full = list(StageBatchSampler(10, 4, seed=0, stage=0, start=0, stop=10))
    flat = [i for b in full for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert flat[:10] != flat[10:20]  # reshuffled each epoch
    assert list(StageBatchSampler(10, 4, seed=0, stage=0, start=3, stop=10)) == full[3:]


def test_sharding_concatenates_to_the_global_batch():
    g = list(StageBatchSampler(37, 8, 0, 0, 0, 9))
    shards = [list(StageBatchSampler(37, 8, 0, 0, 0, 9, rank=r, world=4)) for r in range(4)]
    for m in range(9):
        assert [i for r in range(4) for i in shards[r][m]] == g[m]
    with pytest.raises(ValueError, match="divisible"):
        StageBatchSampler(37, 6, 0, 0, 0, 9, rank=0, world=4)
