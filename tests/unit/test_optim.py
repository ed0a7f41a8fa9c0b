"""The optimizers of the streaming trainer against steps computed by hand: row-wise Adagrad on
sparse and dense gradients (duplicate rows coalesced, untouched rows untouched, the accumulator
one float per row), and the split of a model's parameters between it and Adam."""

from __future__ import annotations

import math

import pytest
import torch

from exfm.optim import ModelOptimizer, RowWiseAdagrad, split_parameters


def test_row_wise_adagrad_matches_a_hand_computed_step() -> None:
    table = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    opt = RowWiseAdagrad([table], lr=0.1, eps=1e-8)
    # step 1, sparse: row 0 twice (coalesced to [0.5, -0.5]) and row 2; row 1 untouched
    table.grad = torch.sparse_coo_tensor(
        torch.tensor([[0, 2, 0]]),
        torch.tensor([[0.25, -0.25], [2.0, 0.0], [0.25, -0.25]]),
        size=(3, 2),
        check_invariants=True,
    )
    opt.step()
    # accumulators: row 0 mean([0.5^2, 0.5^2]) = 0.25; row 2 mean([4, 0]) = 2
    # row 0 -= 0.1 * [0.5, -0.5] / sqrt(0.25); row 2 -= 0.1 * [2, 0] / sqrt(2)
    expected = [[0.9, 2.1], [3.0, 4.0], [5.0 - 0.2 / math.sqrt(2.0), 6.0]]
    assert table.detach().flatten().tolist() == pytest.approx(_flat(expected), abs=1e-6)
    assert opt.state[table]["sum"].tolist() == pytest.approx([0.25, 0.0, 2.0])

    # step 2, dense: every row has a gradient; a zero one leaves its row as it is
    table.grad = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 2.0]])
    opt.step()
    # accumulators: 0.25 + 1 = 1.25; 0; 2 + mean([0, 4]) = 4
    step0 = 0.1 / math.sqrt(1.25)
    expected = [[0.9 - step0, 2.1 - step0], [3.0, 4.0], [expected[2][0], 6.0 - 0.1]]
    assert table.detach().flatten().tolist() == pytest.approx(_flat(expected), abs=1e-6)
    assert opt.state[table]["sum"].tolist() == pytest.approx([1.25, 0.0, 4.0])


def _flat(rows: list[list[float]]) -> list[float]:
    return [x for row in rows for x in row]


def test_the_accumulator_survives_a_state_dict_round_trip() -> None:
    table = torch.nn.Parameter(torch.ones(4, 3))
    opt = RowWiseAdagrad([table], lr=0.5)
    table.grad = torch.full((4, 3), 2.0)
    opt.step()
    again = RowWiseAdagrad([torch.nn.Parameter(table.detach().clone())], lr=0.5)
    again.load_state_dict(opt.state_dict())
    assert next(iter(again.state.values()))["sum"].tolist() == [4.0, 4.0, 4.0, 4.0]


def test_embedding_tables_get_adagrad_and_the_rest_adam(tiny_cfg) -> None:
    from exfm.data.schema import FeatureSpec
    from exfm.trainee import build_trainee

    trainee = build_trainee(tiny_cfg, FeatureSpec.from_config(tiny_cfg.features), "fm")
    sparse, dense = split_parameters(trainee.model)
    assert sparse and dense
    assert all(p.dim() == 2 for p in sparse)
    assert {id(p) for p in sparse}.isdisjoint(id(p) for p in dense)
    assert len(sparse) + len(dense) == len(list(trainee.model.parameters()))
    optimizer = ModelOptimizer(trainee.model, lr=1e-3, embedding_lr=0.05)
    assert isinstance(optimizer.parts["embeddings"], RowWiseAdagrad)
    assert isinstance(optimizer.parts["dense"], torch.optim.Adam)
    with pytest.raises(ValueError, match="expected"):
        optimizer.load_state_dict({"dense": optimizer.parts["dense"].state_dict()})
