"""The weight-norm halves of upstream checkpoints, in either naming, fold into the weight torch computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo.models._weight_norm import fold_weight_norm, split_weight_norm


def test_both_namings_split_and_fold_to_torchs_weight() -> None:
    conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(3, 4, 5))
    new = {f"enc.{k}": v for k, v in conv.state_dict().items()}
    g, v = new["enc.parametrizations.weight.original0"], new["enc.parametrizations.weight.original1"]
    legacy = {"dec.weight_g": g, "dec.weight_v": v, "dec.bias": new["enc.bias"]}
    rest, pairs = split_weight_norm({**new, **legacy})
    assert set(rest) == {"enc.bias", "dec.bias"} and set(pairs) == {"enc", "dec"}
    torch.testing.assert_close(fold_weight_norm(*pairs["enc"]), conv.weight)
    torch.testing.assert_close(fold_weight_norm(*pairs["dec"]), conv.weight)


def test_a_missing_half_is_named_in_the_files_own_style() -> None:
    g, v = torch.ones(4, 1, 1), torch.randn(4, 3, 5)
    with pytest.raises(
        KeyError, match=r"enc\.parametrizations\.weight\.original1 \(weight norm's direction\)"
    ):
        split_weight_norm({"enc.parametrizations.weight.original0": g})
    with pytest.raises(KeyError, match=r"dec\.weight_g \(weight norm's gain\)"):
        split_weight_norm({"dec.weight_v": v})
