"""Random keys as a function of (seed, module name, timestep): identical calls, any order, a fresh process,
torch.compile, and Token Merging."""

import hashlib
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import generate_latents

import litefocus
from litefocus.baselines import token_merging
from litefocus.keys import call_key, keyed_cross_indices, mix32, module_key, tomesd_seed


def test_mix32_is_murmur3_finalizer_on_ints_and_tensors():
    def fmix32(h):  # murmur3's fmix32 in plain Python integers
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & 0xFFFFFFFF
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & 0xFFFFFFFF
        return h ^ (h >> 16)

    values = torch.arange(0, 2**32, 2**20 + 7)
    assert mix32(values).tolist() == [fmix32(int(v)) for v in values] == [mix32(int(v)) for v in values]
    assert fmix32(1) == 0x514E28B7  # murmur3's published fmix32(1)


def test_keyed_draw_is_a_sorted_distinct_subset_and_a_function_of_its_key():
    key = call_key(3, "down_blocks.1.attentions.0.transformer_blocks.0.attn1", torch.tensor(981))
    a = keyed_cross_indices(1000, 100, key)
    assert a.dtype == torch.int64 and a.numel() == a.unique().numel() == 100
    assert torch.equal(a, a.sort().values) and 0 <= a.min() and a.max() < 1000
    assert torch.equal(a, keyed_cross_indices(1000, 100, call_key(3, "down_blocks.1.attentions.0.transformer_blocks.0.attn1", 981)))
    others = [call_key(4, "down_blocks.1.attentions.0.transformer_blocks.0.attn1", 981),
              call_key(3, "down_blocks.1.attentions.1.transformer_blocks.0.attn1", 981),
              call_key(3, "down_blocks.1.attentions.0.transformer_blocks.0.attn1", 961)]
    assert all(not torch.equal(a, keyed_cross_indices(1000, 100, k)) for k in others)
    assert module_key(2**64 - 1, "m") != module_key(2**32 - 1, "m")  # both halves of a seed count


def test_the_processor_and_the_recorder_draw_the_same_keys_through_one_function():
    from litefocus.keys import drawn_keys
    from litefocus.options import LiteFocusOptions
    from litefocus.probes import StepProbe
    from litefocus.processor import LiteFocusAttnProcessor

    name = "up_blocks.2.attentions.1.transformer_blocks.0.attn1"
    step = StepProbe()
    step.timestep = torch.tensor([981, 981])  # as a pipeline passes it, once per guidance half
    processor = LiteFocusAttnProcessor(LiteFocusOptions(ratio=0.1, seed=7), name, None, step)
    drawn = processor.cross_indices(1843, "cpu")
    assert drawn.numel() == 184
    assert torch.equal(drawn, drawn_keys(module_key(7, name), 981.0, 1843, 0.1))  # the recorder's float timestep
    assert torch.equal(drawn, keyed_cross_indices(1843, 184, call_key(7, name, 981)))


def test_keyed_draw_is_uniform():
    """Over many keys each of N indices is drawn count/N of the time (binomial bound), as randperm would."""
    tokens, count, draws = 64, 8, 4000
    hits = torch.zeros(tokens)
    for t in range(draws):
        hits[keyed_cross_indices(tokens, count, call_key(0, "m", t))] += 1
    expected = draws * count / tokens  # 500 each, standard deviation about 21
    assert (hits - expected).abs().max() < 6 * (expected * (1 - count / tokens)) ** 0.5


def test_identical_calls_give_identical_audio_whatever_ran_before(tiny_pipe):
    litefocus.apply(tiny_pipe, ratio=0.1, seed=7)
    try:
        a = generate_latents(tiny_pipe, 2.56, steps=3, prompt="a dog barking")
        a_again = generate_latents(tiny_pipe, 2.56, steps=3, prompt="a dog barking")
        b = generate_latents(tiny_pipe, 5.12, steps=2, prompt="rain on a roof")
        a_after_b = generate_latents(tiny_pipe, 2.56, steps=3, prompt="a dog barking")
    finally:
        litefocus.remove(tiny_pipe)
    with litefocus.enabled(tiny_pipe, ratio=0.1, seed=7):
        a_reapplied = generate_latents(tiny_pipe, 2.56, steps=3, prompt="a dog barking")
    with litefocus.enabled(tiny_pipe, ratio=0.1, seed=8):
        other_seed = generate_latents(tiny_pipe, 2.56, steps=3, prompt="a dog barking")
    assert torch.equal(a, a_again) and torch.equal(a, a_after_b) and torch.equal(a, a_reapplied)
    assert b.shape != a.shape and not torch.equal(a, other_seed)


FRESH_PROCESS = textwrap.dedent("""
    import hashlib, torch, litefocus
    from litefocus.models import tiny_audioldm2_pipeline
    torch.set_num_threads(1)
    pipe = tiny_audioldm2_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    with litefocus.enabled(pipe, ratio=0.1, seed=7):
        latents = pipe("a dog barking", num_inference_steps=3, audio_length_in_s=2.56, output_type="latent",
                       generator=torch.Generator().manual_seed(0)).audios
    print(hashlib.sha256(latents.numpy().tobytes()).hexdigest())
""")


def test_a_fresh_process_gives_the_same_bytes():
    torch.set_num_threads(1)  # thread count can change float reduction order
    try:
        from litefocus.models import tiny_audioldm2_pipeline

        pipe = tiny_audioldm2_pipeline(seed=0)
        pipe.set_progress_bar_config(disable=True)
        generate_latents(pipe, 5.12, steps=2)  # something else first, in this process only
        with litefocus.enabled(pipe, ratio=0.1, seed=7):
            here = generate_latents(pipe, 2.56, steps=3)
    finally:
        torch.set_num_threads(2)
    there = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == hashlib.sha256(here.numpy().tobytes()).hexdigest()


@pytest.mark.parametrize("union", ["exact", "concat"])
def test_torch_compile_has_no_graph_break_no_recompilation_and_matches_eager(tiny_pipe, union):
    """The batched draw and the one-call exact union trace into one graph; later timesteps reuse it."""
    unet = tiny_pipe.unet
    sample = torch.randn(2, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    context = dict(encoder_hidden_states=torch.randn(2, 8, 16), encoder_hidden_states_1=torch.randn(2, 6, 32),
                   return_dict=False)
    torch._dynamo.reset()
    with litefocus.enabled(tiny_pipe, ratio=0.2, seed=1, union=union), torch.no_grad():
        explained = torch._dynamo.explain(unet)(sample, torch.tensor(501), **context)
        assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
        compiled = torch.compile(unet, backend="aot_eager")
        compiled(sample, torch.tensor(701), **context)
        with torch._dynamo.config.patch(error_on_recompile=True):
            for timestep in (501, 301):  # the timestep is an input of the graph, not a constant baked into it
                eager = unet(sample, torch.tensor(timestep), **context)[0]
                torch.testing.assert_close(compiled(sample, torch.tensor(timestep), **context)[0], eager,
                                           atol=1e-5, rtol=1e-5)
    torch._dynamo.reset()


def test_token_merging_draws_are_a_function_of_seed_and_timestep(tiny_pipe):
    def run(seed, prompt="a dog barking"):
        with token_merging(tiny_pipe, seed=seed):
            return generate_latents(tiny_pipe, 2.56, steps=3, prompt=prompt)

    a = run(5)
    run(5, prompt="rain on a roof")
    assert torch.equal(a, run(5))
    with token_merging(tiny_pipe, seed=5):  # within one application too: identical calls, identical audio
        first = generate_latents(tiny_pipe, 2.56, steps=3)
        assert torch.equal(first, generate_latents(tiny_pipe, 2.56, steps=3)) and torch.equal(first, a)
    assert tomesd_seed(5, 981) != tomesd_seed(5, 961) != tomesd_seed(6, 961)


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**64, ValueError), (1.0, TypeError), (True, TypeError)])
def test_token_merging_rejects_bad_seeds(tiny_pipe, seed, error):
    with pytest.raises(error, match="seed must"):
        with token_merging(tiny_pipe, seed=seed):
            pass


def test_a_compiled_unet_with_litefocus_follows_new_lengths_without_recompiling(tiny_pipe):
    """Issue 29, item 6: the predicted grid was a Python tuple guarded as a constant, so every new audio length
    compiled the UNet anew (and past the recompile limit it ran eagerly). With the length dynamic, none does."""
    unet = tiny_pipe.unet
    context = dict(encoder_hidden_states=torch.randn(2, 8, 16), encoder_hidden_states_1=torch.randn(2, 6, 32),
                   return_dict=False)
    first = torch.randn(2, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    torch._dynamo.mark_dynamic(first, 2)  # the time axis, as dense attention gets it after a second length
    torch._dynamo.reset()
    with litefocus.enabled(tiny_pipe, ratio=0.2, seed=1), torch.no_grad():
        compiled = torch.compile(unet, backend="eager")  # guards are dynamo's: no need to lower the graph
        compiled(first, torch.tensor(701), **context)
        with torch._dynamo.config.patch(error_on_recompile=True):
            for frames in (24, 32):
                sample = torch.randn(2, 8, frames, 16, generator=torch.Generator().manual_seed(frames))
                torch.testing.assert_close(compiled(sample, torch.tensor(501), **context)[0],
                                           unet(sample, torch.tensor(501), **context)[0], atol=1e-5, rtol=1e-5)
    torch._dynamo.reset()


def test_flex_under_compile_on_a_cpu_runs_the_sdpa_form(monkeypatch):
    """Issue 27, case 8: compiled flex on a CPU failed at its first call deep in Inductor (NoValidChoicesError); under
    torch.compile on a CPU the flex backend now computes the same union through SDPA."""
    from litefocus import kernel

    q, k, v = (torch.randn(1, 2, 64, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    cross = kernel.draw_cross_indices(64, 0.2, torch.Generator().manual_seed(3))
    eager_flex = kernel.focus_attention(q, k, v, 8, cross, backend="flex")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    monkeypatch.setattr(kernel, "flex_focus_attention", lambda *a, **k: pytest.fail("flex under compile on a CPU"))
    torch.testing.assert_close(kernel.focus_attention(q, k, v, 8, cross, backend="flex"), eager_flex)
