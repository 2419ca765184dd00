"""Data parallelism without processes: how an epoch's batches are shared out among torchrun ranks."""

import numpy as np
import pytest

from imdb_rnn.distributed import Context, shard, used


@pytest.mark.parametrize("world", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("n_batches", [0, 1, 4, 7, 12])
def test_each_rank_trains_its_own_equal_share_of_the_batches(world, n_batches):
    batches = [np.array([10 * b, 10 * b + 1]) for b in range(n_batches)]  # rows of batch b: 10b, 10b+1
    per_rank = n_batches // world
    # the tail that does not divide evenly is skipped: DDP steps every rank in lockstep
    assert [b[0] // 10 for b in used(batches, Context(0, world))] == list(range(per_rank * world))
    shares = [[int(b[0]) // 10 for b in shard(batches, Context(rank, world))] for rank in range(world)]
    assert [len(share) for share in shares] == [per_rank] * world
    # every used batch goes to exactly one rank: no rank sees another's batches
    assert sorted(b for share in shares for b in share) == list(range(per_rank * world))
    # and the batches arrive whole (a rank's batch is one of the epoch's batches, not a mix)
    for rank in range(world):
        for batch in shard(batches, Context(rank, world)):
            assert any(batch is b for b in batches)
