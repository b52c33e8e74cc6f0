"""diffusers' contract: processors replaced by diffusers itself, nested LiteFocus blocks, recorders exited in any
order, recorders and LiteFocus interleaved. Each case restores exactly what was there at its entry."""

import pytest
import torch
from conftest import generate_latents
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

import analysis
import litefocus
from litefocus import LiteFocusAttnProcessor

DOWN, UP = "down_blocks.1", "up_blocks.2"


def processors(pipe):
    return {name: m.processor for name, m in pipe.unet.named_modules() if isinstance(m, Attention)}


def hook_count(pipe):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in pipe.unet.modules())


def litefocus_on(pipe):
    return {n for n, p in processors(pipe).items() if isinstance(p, LiteFocusAttnProcessor)}


@pytest.fixture
def pipe():
    from litefocus.models import tiny_audioldm2_pipeline

    pipe = tiny_audioldm2_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("replace", [
    lambda pipe: pipe.unet.set_attn_processor(AttnProcessor2_0()),
    lambda pipe: pipe.enable_attention_slicing(),
])
def test_is_applied_tells_the_truth_after_diffusers_replaces_processors(pipe, replace):
    litefocus.apply(pipe)
    assert litefocus.is_applied(pipe)
    replace(pipe)
    assert not litefocus.is_applied(pipe) and not litefocus_on(pipe)
    replaced = processors(pipe)
    litefocus.remove(pipe)
    assert hook_count(pipe) == 0  # no grid or timestep hook left behind
    assert all(processors(pipe)[n] is replaced[n] for n in replaced)  # diffusers' choice is kept
    generate_latents(pipe, 2.56, steps=1)


def test_back_to_default_attention_after_remove(pipe):
    """set_default_attn_processor refuses custom processors by diffusers' design: remove first, as the README says."""
    litefocus.apply(pipe)
    with pytest.raises(ValueError):
        pipe.unet.set_default_attn_processor()
    litefocus.remove(pipe)
    pipe.unet.set_default_attn_processor()
    assert not litefocus_on(pipe)


def test_nested_blocks_restore_what_was_there_at_entry(pipe):
    before = processors(pipe)
    with litefocus.enabled(pipe, blocks=[DOWN, UP], ratio=0.1) as outer:
        outer_processors = processors(pipe)
        with litefocus.enabled(pipe, blocks=DOWN, ratio=0.3) as inner:  # same blocks, other settings
            assert all(processors(pipe)[n].options.ratio == 0.3 for n in inner)
            with litefocus.enabled(pipe, blocks="down_blocks.2"):  # other blocks
                assert litefocus_on(pipe) == set(outer) | set(litefocus.self_attention_modules(pipe, "down_blocks.2"))
            assert all(processors(pipe)[n] is before[n] for n in litefocus.self_attention_modules(pipe, "down_blocks.2"))
        after_inner = processors(pipe)
        assert all(after_inner[n] is outer_processors[n] for n in outer_processors)  # outer LiteFocus still on
        assert litefocus.is_applied(pipe)
        sparse = generate_latents(pipe, 2.56, steps=2)
    assert all(processors(pipe)[n] is before[n] for n in before) and hook_count(pipe) == 0
    with litefocus.enabled(pipe, blocks=[DOWN, UP], ratio=0.1):
        torch.testing.assert_close(generate_latents(pipe, 2.56, steps=2), sparse, atol=0, rtol=0)


@pytest.mark.parametrize("order", ["first_in_first_out", "last_in_first_out"])
def test_recorders_exit_in_any_order(pipe, order):
    before = processors(pipe)
    a = analysis.record_attention(pipe, blocks=DOWN, steps=[0])
    b = analysis.record_attention(pipe, blocks=[DOWN, UP], steps=[0])
    a.__enter__()
    b.__enter__()
    generate_latents(pipe, 2.56, steps=1)
    first, second = (a, b) if order == "first_in_first_out" else (b, a)
    first.__exit__(None, None, None)
    generate_latents(pipe, 2.56, steps=1)  # the remaining recorder still works
    second.__exit__(None, None, None)
    assert all(processors(pipe)[n] is before[n] for n in before) and hook_count(pipe) == 0
    assert a.recorded and b.recorded
    generate_latents(pipe, 2.56, steps=1)


@pytest.mark.parametrize("exit_first", ["recorder", "litefocus"])
@pytest.mark.parametrize("enter_first", ["recorder", "litefocus"])
def test_recorder_and_litefocus_interleaved(pipe, enter_first, exit_first):
    before = processors(pipe)
    recorder = analysis.record_attention(pipe, blocks=DOWN, steps=[0])
    block = litefocus.enabled(pipe, blocks=[DOWN, UP], ratio=0.1, seed=2)
    enter = dict(recorder=recorder.__enter__, litefocus=block.__enter__)
    leave = dict(recorder=lambda: recorder.__exit__(None, None, None), litefocus=lambda: block.__exit__(None, None, None))
    enter[enter_first]()
    enter["litefocus" if enter_first == "recorder" else "recorder"]()
    generate_latents(pipe, 2.56, steps=1)
    leave[exit_first]()
    remaining = "litefocus" if exit_first == "recorder" else "recorder"
    # what remains runs as if it were alone: LiteFocus still sparsifies, or the recorder records dense attention
    assert litefocus.is_applied(pipe) == (remaining == "litefocus")
    generate_latents(pipe, 2.56, steps=1)
    leave[remaining]()
    assert all(processors(pipe)[n] is before[n] for n in before) and hook_count(pipe) == 0
    dense_again = generate_latents(pipe, 2.56, steps=2)
    torch.testing.assert_close(dense_again, generate_latents(pipe, 2.56, steps=2), atol=0, rtol=0)


def test_recorder_under_litefocus_sees_the_litefocus_output(pipe):
    """A recorder entered inside a LiteFocus block wraps LiteFocus: the pipeline output is LiteFocus's."""
    with litefocus.enabled(pipe, ratio=0.1, seed=2):
        sparse = generate_latents(pipe, 2.56, steps=2)
        with analysis.record_attention(pipe, blocks=DOWN, steps=[0]):
            recorded = generate_latents(pipe, 2.56, steps=2)
    torch.testing.assert_close(recorded, sparse, atol=0, rtol=0)


def test_remove_takes_off_open_blocks_and_their_exit_is_then_harmless(pipe):
    before = processors(pipe)
    with litefocus.enabled(pipe, blocks=DOWN):
        litefocus.apply(pipe, blocks=UP)
        assert litefocus.remove(pipe)
        assert not litefocus.is_applied(pipe) and hook_count(pipe) == 0
    assert all(processors(pipe)[n] is before[n] for n in before) and hook_count(pipe) == 0
