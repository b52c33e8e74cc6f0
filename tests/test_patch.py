"""LiteFocus on diffusers pipelines: module selection, exact wiring, cleanup, reproducibility, errors."""

import pytest
import torch
from conftest import generate_latents
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

import litefocus
from litefocus import LiteFocusAttnProcessor, LiteFocusOptions, reference_attention
from litefocus.probes import GridProbe, StepProbe


def probes(steps, freq_bins, timestep=500):
    grid, step = GridProbe(), StepProbe()
    grid.shape, step.timestep = (steps, freq_bins), torch.tensor(timestep)
    return grid, step


def processors(pipe):
    return {name: m.processor for name, m in pipe.unet.named_modules() if isinstance(m, Attention)}


def hook_count(pipe):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in pipe.unet.modules())


def expected_self_attention(pipe, prefixes, attn2_is_self=lambda m: not m.is_cross_attention):
    """Independent statement of the rule: attn1, and attn2 when it attends over its own tokens."""
    names = []
    for name, m in pipe.unet.named_modules():
        if not isinstance(m, Attention) or not name.startswith(tuple(p + "." for p in prefixes)):
            continue
        if name.endswith("attn1") or (name.endswith("attn2") and attn2_is_self(m)):
            names.append(name)
    return names


def test_paper_blocks_select_exactly_their_self_attention(tiny_pipe):
    names = litefocus.self_attention_modules(tiny_pipe, ["down_blocks.1", "up_blocks.2"])
    assert names == expected_self_attention(tiny_pipe, ["down_blocks.1", "up_blocks.2"])
    # 2 resnets x (3 attn1 + 1 double-self attn2) down, 3 resnets x 4 up: as in cvssp/audioldm2
    assert len(names) == 20
    assert all(not tiny_pipe.unet.get_submodule(n).is_cross_attention for n in names)


def test_selection_by_pattern_and_predicate(tiny_pipe):
    by_glob = litefocus.self_attention_modules(tiny_pipe, "up_blocks.*.attn1")
    assert by_glob and all(n.startswith("up_blocks.") and n.endswith("attn1") for n in by_glob)
    by_predicate = litefocus.self_attention_modules(tiny_pipe, lambda name, m: name.startswith("mid_block"))
    assert by_predicate == expected_self_attention(tiny_pipe, ["mid_block"])
    everything = litefocus.self_attention_modules(tiny_pipe)
    assert len(everything) == 64  # 96 attention modules, 64 of them self-attention, as in the full model
    assert sum(isinstance(m, Attention) for m in tiny_pipe.unet.modules()) == 96


def test_with_block_patches_and_restores_the_very_same_processors(tiny_pipe):
    before, hooks = processors(tiny_pipe), hook_count(tiny_pipe)
    with litefocus.enabled(tiny_pipe, seed=0) as names:
        inside = processors(tiny_pipe)
        assert {n for n, p in inside.items() if isinstance(p, LiteFocusAttnProcessor)} == set(names)
        assert all(inside[n] is before[n] for n in before if n not in names)  # untouched layers keep theirs
        assert litefocus.is_applied(tiny_pipe)
    after = processors(tiny_pipe)
    assert all(after[n] is before[n] for n in before)
    assert hook_count(tiny_pipe) == hooks and not litefocus.is_applied(tiny_pipe)


def test_with_block_restores_after_an_exception(tiny_pipe):
    before, hooks = processors(tiny_pipe), hook_count(tiny_pipe)
    with pytest.raises(RuntimeError, match="boom"):
        with litefocus.enabled(tiny_pipe):
            raise RuntimeError("boom")
    assert all(processors(tiny_pipe)[n] is before[n] for n in before)
    assert hook_count(tiny_pipe) == hooks


def test_apply_twice_replaces_and_remove_restores(tiny_pipe):
    before, hooks = processors(tiny_pipe), hook_count(tiny_pipe)
    first = litefocus.apply(tiny_pipe, ratio=0.1)
    second = litefocus.apply(tiny_pipe, blocks="down_blocks.2", ratio=0.2)
    # a grid hook per Transformer2DModel of down_blocks.2 (2 x 3) and the timestep hook, the first ones gone
    assert hook_count(tiny_pipe) == hooks + 7
    patched = {n for n, p in processors(tiny_pipe).items() if isinstance(p, LiteFocusAttnProcessor)}
    assert patched == set(second) and not set(first) & patched
    assert all(processors(tiny_pipe)[n].options.ratio == 0.2 for n in second)
    assert litefocus.remove(tiny_pipe) == second
    assert all(processors(tiny_pipe)[n] is before[n] for n in before)
    assert hook_count(tiny_pipe) == hooks and litefocus.remove(tiny_pipe) == []


@pytest.mark.parametrize("length_s", [5.12, 2.6])  # latent T = 128 and 65 (odd: level grids 33x8, 17x4, 9x2)
def test_pipeline_runs_and_full_ratio_cross_only_equals_dense(tiny_pipe, length_s):
    dense = generate_latents(tiny_pipe, length_s)
    with litefocus.enabled(tiny_pipe, ratio=0.1):
        sparse = generate_latents(tiny_pipe, length_s)
    with litefocus.enabled(tiny_pipe, blocks=None, ratio=1.0, same_frequency=False):  # every self-attention, all keys
        exact = generate_latents(tiny_pipe, length_s)
    assert sparse.shape == dense.shape and torch.isfinite(sparse).all()
    assert (sparse - dense).abs().max() > 1e-4  # sparsity changes the result...
    torch.testing.assert_close(exact, dense, atol=1e-4, rtol=1e-4)  # ...and the wiring alone does not


def test_same_seed_same_audio_different_seed_different_audio(tiny_pipe):
    def run(seed):
        with litefocus.enabled(tiny_pipe, ratio=0.1, seed=seed):
            return generate_latents(tiny_pipe, 2.56, steps=2)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def make_attention(**kwargs):
    torch.manual_seed(0)
    return Attention(query_dim=16, heads=2, dim_head=8, **kwargs).eval()


@pytest.mark.parametrize("four_d", [False, True])
def test_processor_wiring_equals_reference_on_a_module(four_d):
    """Projections, norms, residual and rescale around the kernel, against a hand-wired reference."""
    attn = make_attention(norm_num_groups=4, residual_connection=True, rescale_output_factor=2.0, qk_norm="layer_norm")
    steps, freq_bins = 5, 4
    x4 = torch.randn(2, 16, steps, freq_bins)
    x = x4 if four_d else x4.flatten(2).transpose(1, 2)  # (b, c, t, f) -> (b, t*f, c), time-major
    processor = LiteFocusAttnProcessor(LiteFocusOptions(ratio=0.3, seed=4), "attn", *probes(steps, freq_bins))
    attn.set_processor(processor)
    with torch.no_grad():
        out = attn(x)
        tokens = x4.flatten(2).transpose(1, 2)
        h = attn.group_norm(tokens.transpose(1, 2)).transpose(1, 2)
        q, k, v = (proj(h).view(2, -1, 2, 8).transpose(1, 2) for proj in (attn.to_q, attn.to_k, attn.to_v))
        q, k = attn.norm_q(q), attn.norm_k(k)
        cross = processor.cross_indices(steps * freq_bins, q.device)
        assert cross.numel() == 6  # floor(0.3 * 20)
        o = reference_attention(q, k, v, freq_bins=freq_bins, cross_indices=cross)
        o = attn.to_out[0](o.transpose(1, 2).reshape(2, -1, 16))
        expected = (o + tokens) / 2.0
        if four_d:
            expected = expected.transpose(1, 2).reshape(x4.shape)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_processor_with_all_keys_matches_stock_processor():
    attn = make_attention(norm_num_groups=4, residual_connection=True, rescale_output_factor=2.0)
    x = torch.randn(2, 16, 6, 4)
    with torch.no_grad():
        attn.set_processor(AttnProcessor2_0())
        stock = attn(x)
        attn.set_processor(LiteFocusAttnProcessor(LiteFocusOptions(ratio=1.0, same_frequency=False), "attn", None,
                                                  probes(6, 4)[1]))
        ours = attn(x)
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-5)


def test_audioldm_v1_attn2_is_self_attention_and_runs():
    from litefocus.models import tiny_audioldm_pipeline

    pipe = tiny_audioldm_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    names = litefocus.self_attention_modules(pipe, litefocus.PAPER_BLOCKS)
    assert names == expected_self_attention(pipe, litefocus.PAPER_BLOCKS, attn2_is_self=lambda m: True)
    assert sum(n.endswith("attn2") for n in names) == 5  # one transformer per resnet: 2 down + 3 up
    before = processors(pipe)
    latents = torch.randn(1, 8, 33, 16)
    call = lambda: pipe("a dog", num_inference_steps=2, audio_length_in_s=1.32, latents=latents.clone()).audios
    dense = call()
    with litefocus.enabled(pipe, ratio=0.1):
        sparse = call()
    with litefocus.enabled(pipe, blocks=None, ratio=1.0, same_frequency=False):
        exact = call()
    assert sparse.shape == dense.shape == (1, 132 * 160)
    torch.testing.assert_close(exact, dense, atol=1e-5, rtol=1e-3)
    assert all(processors(pipe)[n] is before[n] for n in before)


@pytest.mark.parametrize(
    "blocks, message",
    [
        ("down_blocks.7", "'down_blocks.7' does not exist in this UNet; blocks with self-attention: down_blocks.1"),
        ("down_blocks.0", "'down_blocks.0' has no self-attention; blocks with self-attention: down_blocks.1"),
        ([], "blocks is empty"),
        ("", r"a block name is empty \(blocks=''\)"),  # issue 27: "'' has no self-attention" (the root is '')
        (["down_blocks.1", " "], "a block name is empty"),
        (lambda name, m: False, "selected no self-attention module"),
    ],
)
def test_bad_block_selection_errors(tiny_pipe, blocks, message):
    with pytest.raises(ValueError, match=message):
        litefocus.apply(tiny_pipe, blocks=blocks)
    assert not litefocus.is_applied(tiny_pipe)


def test_cross_attention_is_never_selected(tiny_pipe):
    # attentions.1 and .2 of each block are cross-attention transformers: only their attn1 is selected
    names = litefocus.self_attention_modules(tiny_pipe, "down_blocks.1.attentions.1")
    assert names == ["down_blocks.1.attentions.1.transformer_blocks.0.attn1"]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(ratio=1.2), ValueError, r"ratio must lie in \[0, 1\]"),
        (dict(same_frequency=False, cross_frequency=False), ValueError, "both be False"),
        (dict(same_frequency=False, ratio=0.0), ValueError, "needs ratio > 0"),
        (dict(ratio="0.1"), ValueError, r"ratio must lie in \[0, 1\]"),
        (dict(ratio=None), ValueError, r"ratio must lie in \[0, 1\]"),
        (dict(ratio=torch.tensor(0.1)), TypeError, "not a tensor \\(use float\\(ratio\\)\\)"),  # issue 27
        (dict(seed=-1), ValueError, r"seed must lie in \[0, 2\*\*64\)"),
        (dict(seed=2**64), ValueError, r"seed must lie in \[0, 2\*\*64\)"),
        (dict(seed=1.5), TypeError, "seed must be an int"),
        (dict(seed="0"), TypeError, "seed must be an int"),
        (dict(union="authors"), ValueError, "union must be one of"),
        (dict(same_frequency="no"), TypeError, "same_frequency must be True or False"),
        (dict(blocks=123), TypeError, "blocks must be a block name.*got 123"),
    ],
)
def test_bad_options_errors(tiny_pipe, kwargs, error, message):
    for attach in (litefocus.apply, lambda pipe, **kw: litefocus.enabled(pipe, **kw).__enter__()):
        with pytest.raises(error, match=message):
            attach(tiny_pipe, **kwargs)
        assert not litefocus.is_applied(tiny_pipe) and hook_count(tiny_pipe) == 0


def test_apply_to_a_module_without_self_attention_is_an_error():
    from diffusers import UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8), norm_num_groups=4,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, add_attention=False)
    for blocks in (None, litefocus.PAPER_BLOCKS):
        with pytest.raises(ValueError, match="has no self-attention module"):
            litefocus.apply(unet, blocks=blocks)
    assert not litefocus.is_applied(unet)


def test_grid_mismatch_and_missing_grid_errors():
    attn = make_attention()
    probe, step = GridProbe(), StepProbe()
    attn.set_processor(LiteFocusAttnProcessor(LiteFocusOptions(), "attn", probe, step))
    with pytest.raises(RuntimeError, match="no Transformer2DModel forward reported one"):
        attn(torch.randn(1, 20, 16))
    probe.shape = (4, 5)
    with pytest.raises(RuntimeError, match="needs the UNet call's timestep"):
        attn(torch.randn(1, 20, 16))
    step.timestep = 10
    probe.shape = (3, 8)
    with pytest.raises(ValueError, match=r"grid \(3, 8\) has 24 cells but the module got 20 tokens"):
        attn(torch.randn(1, 20, 16))
    with pytest.raises(RuntimeError, match="cross-attention"):
        attn(torch.randn(1, 24, 16), encoder_hidden_states=torch.randn(1, 3, 16))


def test_numpy_scalars_are_numbers_and_strings_are_not():
    """Issue 22, case 32: ratio=np.float32(0.1) was refused; a ratio is any real number in [0, 1]."""
    import numpy as np

    from litefocus.options import LiteFocusOptions

    options = LiteFocusOptions(ratio=np.float32(0.25))
    assert options.ratio == 0.25 and type(options.ratio) is float
    for bad in ("0.1", float("nan"), True, 1.5):
        with pytest.raises(ValueError, match="ratio must lie in"):
            LiteFocusOptions(ratio=bad)


def test_apply_names_a_compiled_unet_and_another_component(tiny_pipe):
    compiled = torch.compile(tiny_pipe.unet)  # wrapping only: nothing is traced until it is called
    with pytest.raises(TypeError, match=r"compiled \(torch.compile\): apply LiteFocus.*before compiling.*_orig_mod"):
        litefocus.apply(compiled)
    with pytest.raises(TypeError, match="got AutoencoderKL: pass pipe or pipe.unet"):
        litefocus.apply(tiny_pipe.vae)
    with pytest.raises(TypeError, match="got AutoencoderKL"):
        from analysis.recorder import record_attention

        record_attention(tiny_pipe.vae)


def test_the_flex_and_by_rows_backends_give_the_default_output_and_varlen_asks_for_cuda(tiny_pipe):
    unet = tiny_pipe.unet
    sample = torch.randn(2, 8, 32, 16)
    context, context_1 = torch.randn(2, 4, 16), torch.randn(2, 7, 32)
    call = lambda: unet(sample, 10, encoder_hidden_states=context, encoder_hidden_states_1=context_1).sample
    with torch.no_grad():
        with litefocus.enabled(tiny_pipe):
            default = call()
        with litefocus.enabled(tiny_pipe, backend="flex"):
            flex = call()
        torch.testing.assert_close(flex, default, atol=1e-5, rtol=1e-5)
        with litefocus.enabled(tiny_pipe, backend="by_rows", draws="per_module"):  # the path before 2026-12
            before = call()
        torch.testing.assert_close(before, default, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="backend='varlen' .*needs a CUDA device"):
            with litefocus.enabled(tiny_pipe, backend="varlen"):
                call()
