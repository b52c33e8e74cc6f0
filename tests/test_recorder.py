"""Recording attention on the tiny pipeline: exact probabilities, no side effects, budgets, files."""

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import generate_latents
from diffusers.models.attention_processor import Attention

import analysis
import litefocus
from litefocus.probes import StepProbe
from analysis import metrics

MODULE = "down_blocks.1.attentions.0.transformer_blocks.0.attn1"


def processors(pipe):
    return {name: m.processor for name, m in pipe.unet.named_modules() if isinstance(m, Attention)}


def hook_count(pipe):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in pipe.unet.modules())


def test_recorded_probabilities_equal_softmax_qk_and_leave_no_trace(tiny_pipe):
    before, hooks = processors(tiny_pipe), hook_count(tiny_pipe)
    module = tiny_pipe.unet.get_submodule(MODULE)
    inputs = []
    capture = module.register_forward_pre_hook(lambda m, a, k: inputs.append((a[0] if a else k["hidden_states"]).clone()),
                                               with_kwargs=True)
    plain = generate_latents(tiny_pipe, 2.6, steps=3)
    inputs.clear()
    try:
        with analysis.record_attention(tiny_pipe, blocks="down_blocks.1", steps=[0, 2]) as rec:
            recorded = generate_latents(tiny_pipe, 2.6, steps=3)
    finally:
        capture.remove()
    assert torch.equal(plain, recorded)  # recording does not change the output
    assert all(processors(tiny_pipe)[n] is before[n] for n in before) and hook_count(tiny_pipe) == hooks

    maps = rec.maps[MODULE]
    assert maps.dims == ("step", "head", "q_time", "q_freq", "k_time", "k_freq")
    assert list(maps.step.values) == [0, 2] and maps.sizes["q_time"] == 33 and maps.sizes["q_freq"] == 8
    for step in (0, 2):
        hidden = inputs[step]  # (2, N, C): [unconditional, conditional]
        query, key = module.head_to_batch_dim(module.to_q(hidden)), module.head_to_batch_dim(module.to_k(hidden))
        probs = module.get_attention_scores(query, key).view(2, module.heads, 264, 264)[1]  # conditional half
        got = torch.from_numpy(maps.sel(step=step).values.reshape(module.heads, 264, 264))
        torch.testing.assert_close(got, probs, atol=1e-5, rtol=1e-4)
    # every selected module, each chosen step exactly once
    assert rec.recorded == rec.names and len(rec.names) == 8
    assert all(list(rec.dataset(n).step.values) == [0, 2] for n in rec.names)
    assert rec.timesteps[0] > rec.timesteps[2]


def test_streamed_summaries_agree_with_the_full_maps(tiny_pipe):
    with analysis.record_attention(tiny_pipe, blocks=MODULE, steps=[1]) as rec:
        generate_latents(tiny_pipe, 2.56, steps=2)
    ds, maps = rec.dataset(MODULE), rec.maps[MODULE]
    xr.testing.assert_allclose(ds["offset_profile"], metrics.offset_profile(maps), atol=1e-6)
    np.testing.assert_allclose(ds["entropy"], metrics.entropy(maps), rtol=1e-4)
    xr.testing.assert_allclose(ds["row_mass"].rename(None), metrics.row_mass(maps).rename(None), atol=1e-6)
    assert ((ds["focus_mass"] > 0) & (ds["focus_mass"] < 1)).all()
    assert ((ds["sparse_error"] > 0) & (ds["sparse_error"] < 1)).all()


def test_focus_mass_and_error_equal_a_direct_computation(tiny_pipe):
    module = tiny_pipe.unet.get_submodule(MODULE)
    inputs = []
    capture = module.register_forward_pre_hook(lambda m, a, k: inputs.append((a[0] if a else k["hidden_states"]).clone()),
                                               with_kwargs=True)
    try:
        with analysis.record_attention(tiny_pipe, blocks=MODULE, steps=[1], focus_ratio=0.2, seed=4) as rec:
            generate_latents(tiny_pipe, 2.6, steps=2)
    finally:
        capture.remove()
    ds = rec.dataset(MODULE)
    hidden = inputs[1][1:]  # the conditional half, (1, N, C)
    split = lambda x: x.view(1, -1, module.heads, x.shape[-1] // module.heads).transpose(1, 2)  # noqa: E731
    query, key, value = split(module.to_q(hidden)), split(module.to_k(hidden)), split(module.to_v(hidden))
    tokens, freq_bins = query.shape[2], 8
    probs = (query @ key.transpose(-1, -2) * module.scale).softmax(-1)[0]  # (heads, N, N)
    # the focus set is the one LiteFocus with the same seed draws in this module at this timestep
    step = StepProbe()
    step.timestep = torch.tensor(float(ds.timestep.sel(step=1)))
    processor = litefocus.LiteFocusAttnProcessor(litefocus.LiteFocusOptions(ratio=0.2, seed=4), MODULE, None, step)
    cross = processor.cross_indices(tokens, torch.device("cpu"))
    freq = torch.arange(tokens) % freq_bins
    focus = (freq[None, :] == freq[:, None]).clone()
    focus[:, cross] = True  # focus set of query i (rows) over keys j (columns)
    mass = (probs * focus).sum(-1)
    exact, sparse = probs @ value[0], (probs * focus / mass[..., None]) @ value[0]
    error = (sparse - exact).norm(dim=-1) / exact.norm(dim=-1)
    np.testing.assert_allclose(ds["focus_mass"].sel(step=1), mass.mean(-1).detach(), rtol=1e-5)
    np.testing.assert_allclose(ds["sparse_error"].sel(step=1), error.mean(-1).detach(), rtol=1e-4)


def test_sampled_rows_and_datatree_round_trip(tiny_pipe, tmp_path):
    with analysis.record_attention(tiny_pipe, blocks="up_blocks.2", steps=[0], queries=5, seed=3) as rec:
        generate_latents(tiny_pipe, 2.56, steps=1)
    rows = rec.rows[rec.names[0]]
    assert rows.sizes["query"] == 5 and np.allclose(rows.sum(("k_time", "k_freq")), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="full maps were not kept"):
        rec.maps
    tree = rec.to_datatree()
    path = tmp_path / "attention.nc"
    tree.to_netcdf(path, engine="h5netcdf")
    back = xr.open_datatree(path, engine="h5netcdf")
    node = back["up_blocks/2/attentions/0/transformer_blocks/0/attn1"].to_dataset()
    xr.testing.assert_allclose(node.load(), tree["up_blocks/2/attentions/0/transformer_blocks/0/attn1"].to_dataset())
    assert node.attrs["module"] == "up_blocks.2.attentions.0.transformer_blocks.0.attn1" and node.attrs["freq_bins"] == 8


def test_max_bytes_guard_fires_before_anything_is_kept(tiny_pipe):
    before = processors(tiny_pipe)
    with pytest.raises(MemoryError, match="would exceed max_bytes"):
        with analysis.record_attention(tiny_pipe, blocks=MODULE, max_bytes=100_000) as rec:
            generate_latents(tiny_pipe, 2.56, steps=2)
    assert rec.recorded == [] and rec._kept_bytes == 0
    assert all(processors(tiny_pipe)[n] is before[n] for n in before)


def test_bad_recorder_arguments(tiny_pipe):
    with pytest.raises(ValueError, match="guidance must be one of"):
        analysis.record_attention(tiny_pipe, guidance="both")
    with pytest.raises(ValueError, match="queries must be 'all'"):
        analysis.record_attention(tiny_pipe, queries=0)
    with pytest.raises(ValueError, match="does not exist"):
        analysis.record_attention(tiny_pipe, blocks="down_blocks.9")


def test_sampled_summaries_estimate_the_full_ones(tiny_pipe):
    kwargs = dict(blocks=MODULE, steps=[1], queries=3, seed=5)
    with analysis.record_attention(tiny_pipe, **kwargs) as full:
        generate_latents(tiny_pipe, 2.6, steps=2)
    with analysis.record_attention(tiny_pipe, summary_queries=96, **kwargs) as sampled:
        generate_latents(tiny_pipe, 2.6, steps=2)
    a, b = full.dataset(MODULE), sampled.dataset(MODULE)
    assert a.attrs["summary_queries"] == 264 and 96 <= b.attrs["summary_queries"] <= 99
    xr.testing.assert_allclose(a["rows"], b["rows"])  # the kept rows are exact either way
    np.testing.assert_allclose(b["offset_profile"].sum(("time_offset", "freq_offset")), 1.0, rtol=1e-5)
    np.testing.assert_allclose(b["entropy"], a["entropy"], rtol=0.02)
    np.testing.assert_allclose(metrics.same_frequency_mass(b["offset_profile"]),
                               metrics.same_frequency_mass(a["offset_profile"]), rtol=0.1)
    assert not np.allclose(b["offset_profile"], a["offset_profile"])  # it really is a different (sampled) estimate


@pytest.mark.parametrize("heads, message", [
    ([], "a non-empty list of head indices"),
    ([0, 99], r"heads \[99\] do not exist in every chosen module: the fewest heads among them is"),
    ("01", "must be a list of head indices"),
    ([True], "a non-empty list of head indices"),
])
def test_heads_are_checked_before_the_run(tiny_pipe, heads, message):
    """Issue 22, case 19: heads beyond the head count failed mid-run (IndexError), [] only later."""
    with pytest.raises(ValueError, match=message):
        analysis.record_attention(tiny_pipe, heads=heads)
    with pytest.raises(ValueError, match="queries must be 'all' or a positive number"):
        analysis.record_attention(tiny_pipe, queries=True)


def test_max_bytes_counts_every_step_of_the_run_before_the_first_is_kept(tiny_pipe):
    # 2.56 s: level-1 grid 32 x 8 = 256 tokens; 16 queries of every head of one module: a step's rows
    heads = tiny_pipe.unet.get_submodule(MODULE).heads
    one_step = 4 * heads * 16 * 256
    with pytest.raises(MemoryError, match=rf"{one_step / 2**20:.2f} MiB a step, 3 step\(s\) to record, 0.00 MiB kept"):
        with analysis.record_attention(tiny_pipe, blocks=MODULE, queries=16, max_bytes=2 * one_step) as rec:
            generate_latents(tiny_pipe, 2.56, steps=3)  # steps=None: the scheduler says how many
    assert rec.recorded == [] and rec._kept_bytes == 0
    with analysis.record_attention(tiny_pipe, blocks=MODULE, queries=16, max_bytes=3 * one_step) as rec:
        generate_latents(tiny_pipe, 2.56, steps=3)
    assert rec._kept_bytes == 3 * one_step


def test_one_recorder_refuses_a_second_length_and_keeps_the_first(tiny_pipe):
    with analysis.record_attention(tiny_pipe, blocks=MODULE, queries=4) as rec:
        generate_latents(tiny_pipe, 1.28, steps=2)
        with pytest.raises(ValueError, match=r"grid \(16, 8\) and now gets \(32, 8\) \(another length\)"):
            generate_latents(tiny_pipe, 2.56, steps=2)
    assert rec.dataset(MODULE).sizes["k_time"] == 16 and rec.dataset(MODULE).sizes["step"] == 2
    with pytest.raises(ValueError, match="queries"):
        analysis.record_attention(tiny_pipe, blocks=MODULE, queries=True)


def test_numpy_integers_are_taken_where_ints_are(tiny_pipe):
    import numpy as np

    with analysis.record_attention(tiny_pipe, blocks=MODULE, queries=np.int64(4), heads=[np.int64(1)],
                                   chunk=np.int32(64), seed=np.uint8(3)) as rec:
        generate_latents(tiny_pipe, 1.28, steps=1)
    assert rec.dataset(MODULE).sizes["query"] == 4 and rec.heads == [1] and type(rec.seed) is int
    ds = analysis.measure_sparsity(tiny_pipe, "a dog", np.float32(1.28), np.int64(1), np.int64(0), blocks=MODULE)
    assert ds.sizes["step"] == 1
