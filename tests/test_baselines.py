"""Token Merging through tomesd, on the chosen blocks only."""

import torch

from litefocus.baselines import token_merging


def test_token_merging_halves_tokens_in_selected_blocks_only(tiny_pipe):
    unet = tiny_pipe.unet
    seen = {}

    def record(name):
        return lambda module, args, kwargs: seen.__setitem__(name, (args[0] if args else kwargs["hidden_states"]).shape[1])

    hooks = [m.register_forward_pre_hook(record(n), with_kwargs=True)
             for n, m in unet.named_modules() if n.endswith("attn1")]
    sample = torch.randn(2, 8, 33, 16)  # odd time length: level-1 grid 17 x 8 = 136 tokens
    context, context_1 = torch.randn(2, 4, 16), torch.randn(2, 7, 32)
    call = lambda: unet(sample, 10, encoder_hidden_states=context, encoder_hidden_states_1=context_1).sample
    try:
        with torch.no_grad():
            dense = call()
            dense_tokens = dict(seen)
            with token_merging(tiny_pipe, ratio=0.5) as names:
                merged = call()
            merged_tokens = dict(seen)
            after = call()
    finally:
        for h in hooks:
            h.remove()
    assert len(names) == 15  # every transformer block of down_blocks.1 (6) and up_blocks.2 (9)
    for name, tokens in merged_tokens.items():
        if name.startswith(("down_blocks.1.", "up_blocks.2.")):
            assert (dense_tokens[name], tokens) == (136, 68)
        else:
            assert tokens == dense_tokens[name]
    assert (merged - dense).abs().max() > 1e-4
    assert torch.equal(after, dense)
    assert not any(type(m).__name__ == "ToMeBlock" for m in unet.modules())


def test_nested_blocks_give_back_the_outer_token_merging_and_merged_grids_are_named(tiny_pipe):
    import pytest

    import litefocus
    from analysis.recorder import record_attention

    unet = tiny_pipe.unet
    sample = torch.randn(2, 8, 32, 16)
    context, context_1 = torch.randn(2, 4, 16), torch.randn(2, 7, 32)
    call = lambda: unet(sample, 10, encoder_hidden_states=context, encoder_hidden_states_1=context_1).sample

    def merged_blocks():
        return sorted(n for n, m in unet.named_modules() if type(m).__name__ == "ToMeBlock")

    with torch.no_grad():
        dense = call()
        with token_merging(tiny_pipe, ratio=0.5) as outer:
            outer_out = call()
            with token_merging(tiny_pipe, blocks="up_blocks.2", ratio=0.25):
                assert all(n.startswith("up_blocks.2.") for n in merged_blocks())
            assert merged_blocks() == sorted(outer)  # the outer block's merging is back, and its draws
            assert torch.equal(call(), outer_out)
            with pytest.raises(ValueError, match="fewer tokens than cells: Token Merging"):
                with litefocus.enabled(tiny_pipe, blocks="down_blocks.1"):
                    call()
            with pytest.raises(ValueError, match="fewer tokens than cells: Token Merging"):
                with record_attention(tiny_pipe, blocks="down_blocks.1"):
                    call()
        assert merged_blocks() == [] and torch.equal(call(), dense)
