"""one_torch_thread lowers torch's thread count for its block only, errors included."""

from __future__ import annotations

import pytest
import torch

from mmcr.threads import one_torch_thread


def test_one_torch_thread_restores_the_count_after_the_block_and_after_an_error() -> None:
    before = torch.get_num_threads()
    with one_torch_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), one_torch_thread():
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
