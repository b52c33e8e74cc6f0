"""Timing self-attention modules and their cores on the tiny pipeline, against a planted slow core."""

import time

import pytest
import torch
from conftest import generate_latents

from analysis.timing import time_attention

PLANTED_S = 0.01


def test_core_time_is_the_planted_sdpa_time_of_self_attention_only(tiny_pipe, monkeypatch):
    stock = torch.nn.functional.scaled_dot_product_attention
    calls = []

    def slow_sdpa(*args, **kwargs):
        calls.append(1)
        time.sleep(PLANTED_S)
        return stock(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", slow_sdpa)
    hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in tiny_pipe.unet.modules())
    with time_attention(tiny_pipe) as timing:
        generate_latents(tiny_pipe, 2.6, steps=2)
    assert torch.nn.functional.scaled_dot_product_attention is slow_sdpa  # put back as it was found
    assert sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in tiny_pipe.unet.modules()) == hooks

    table = timing.table()
    assert len(table) == 64 and (table.core_s <= table.module_s).all() and table.module_s.sum() < timing.forward_s
    # two UNet calls (batch 2 under guidance, one call per step) per module; cross-attention calls are not counted
    assert ((table.core_s >= 2 * PLANTED_S) & (table.core_s < 2 * PLANTED_S + 0.05)).all()
    assert len(calls) > 2 * len(table)  # cross-attention modules called SDPA too, untimed
    level1 = table[table.block.isin(["down_blocks.1", "up_blocks.2"])]
    assert (level1.level == 1).all() and (level1.freq_bins == 8).all() and (level1.time_bins == 33).all()
    assert set(table.level) == {1, 2, 3}


def test_timings_exited_in_any_order_leave_sdpa_as_it_was(tiny_pipe):
    """Issue 22, case 18: two timings exited out of order left a dead wrapper as SDPA for the rest of the process."""
    import torch.nn.functional as F

    from analysis.timing import time_attention

    original = F.scaled_dot_product_attention
    first, second = time_attention(tiny_pipe), time_attention(tiny_pipe)
    first.__enter__()
    second.__enter__()
    q = torch.randn(1, 1, 4, 8)
    first.__exit__(None, None, None)
    assert torch.equal(F.scaled_dot_product_attention(q, q, q), original(q, q, q))  # still works, one timing open
    second.__exit__(None, None, None)
    assert F.scaled_dot_product_attention is original


def test_level_shares_without_a_timed_forward_say_so(tiny_pipe):
    from analysis.timing import time_attention

    with time_attention(tiny_pipe) as timing:
        pass
    with pytest.raises(ValueError, match="no UNet forward was timed"):
        timing.level_shares()


def test_the_flex_backend_core_is_timed_too(tiny_pipe, monkeypatch):
    """Issue 27, case 7: under backend="flex" the patched level's core share was 0 (only SDPA was wrapped), so
    choose_blocks(shares=...) saw nothing to shrink."""
    import torch.nn.attention.flex_attention as flex_module

    import litefocus

    stock = flex_module.flex_attention

    def slow_flex(*args, **kwargs):
        time.sleep(PLANTED_S)
        return stock(*args, **kwargs)

    monkeypatch.setattr(flex_module, "flex_attention", slow_flex)
    with litefocus.enabled(tiny_pipe, blocks=["down_blocks.1"], ratio=0.2, backend="flex"):
        with time_attention(tiny_pipe, blocks=["down_blocks.1"]) as timing:
            generate_latents(tiny_pipe, 2.6, steps=1)
    assert flex_module.flex_attention is slow_flex  # put back as it was found
    assert (timing.table().core_s >= PLANTED_S).all()
