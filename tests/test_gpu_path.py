"""The GPU path, proved on the CPU: one batched draw per UNet call with each module's own keys, few operations per
patched call (each a kernel launch on a GPU), and no data-dependent shape or host read anywhere (the ``meta``
device, where any would fail)."""

import copy

import pytest
import torch

import litefocus
from analysis.operations import count_operations
from litefocus.keys import drawn_keys, module_key
from litefocus.models import tiny_audioldm2_pipeline, tiny_audioldm_pipeline

FORMS = {"exact": {}, "concat": dict(union="concat"), "same_frequency_only": dict(cross_frequency=False),
         "cross_frequency_only": dict(same_frequency=False)}


def unet_call(pipe, seconds=3.3):
    """The UNet inputs of one pipeline step (odd length: odd grids after downsampling)."""
    captured = {}

    def grab(module, args, kwargs):
        captured.update(args=args, kwargs=kwargs)

    hook = pipe.unet.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        pipe("a dog barking", num_inference_steps=1, audio_length_in_s=seconds, output_type="latent")
    finally:
        hook.remove()
    return captured["args"], captured["kwargs"]


@pytest.mark.parametrize("build", [tiny_audioldm2_pipeline, tiny_audioldm_pipeline], ids=["audioldm2", "audioldm"])
def test_the_batched_draw_gives_every_module_its_own_keys_bit_for_bit(build):
    pipe = build(0)
    pipe.set_progress_bar_config(disable=True)
    args, kwargs = unet_call(pipe)
    seen = {}
    with litefocus.enabled(pipe, lambda name, module: True, ratio=0.1, seed=5) as names:
        processors = {n: p for n, p in pipe.unet.attn_processors.items() if n.removesuffix(".processor") in names}

        def spy(processor):
            original = processor.cross_indices

            def cross_indices(num_tokens, device):
                seen[processor.name] = (num_tokens, original(num_tokens, device), processor.step.timestep)
                return seen[processor.name][1]
            return cross_indices

        for processor in processors.values():
            processor.cross_indices = spy(processor)
        with torch.no_grad():
            pipe.unet(*args, **kwargs)
        assert set(seen) == set(names) and len({n for n, _, _ in seen.values()}) >= 2  # several levels
        draws = next(iter(processors.values())).step.draws  # one KeyDraws shared by every processor, per level
        batched = {name: (tokens, keys) for tokens, by_name in draws.values() for name, keys in by_name.items()}
    assert set(batched) == set(names)  # every module's keys came from the batch, none drew its own
    for name, (num_tokens, keys, timestep) in seen.items():
        assert batched[name][0] == num_tokens
        assert torch.equal(keys, drawn_keys(module_key(5, name), timestep, num_tokens, 0.1))


@pytest.mark.parametrize("form", ["exact", "concat"])
def test_a_patched_call_costs_at_most_40_operations_more_than_dense(form):
    """Non-view aten operations of one UNet forward, per patched module call, minus dense's (the draw included):
    179 for the exact union and 118 for concat before the batched draw and the one-call exact union."""
    pipe = tiny_audioldm2_pipeline(0)
    pipe.set_progress_bar_config(disable=True)
    args, kwargs = unet_call(pipe, seconds=10.24)

    def operations():
        with torch.no_grad(), count_operations() as counted:
            pipe.unet(*args, **kwargs)
        return counted.total

    dense = operations()
    with litefocus.enabled(pipe, ratio=0.1, **FORMS[form]) as names:
        per_call = (operations() - dense) / len(names)
    assert len(names) == 20 and per_call <= 40, per_call


@pytest.mark.parametrize("form", list(FORMS))
def test_the_whole_unet_with_litefocus_runs_on_the_meta_device(form):
    pipe = tiny_audioldm2_pipeline(0)
    pipe.set_progress_bar_config(disable=True)
    args, kwargs = unet_call(pipe)
    unet = copy.deepcopy(pipe.unet).to("meta")
    to_meta = lambda x: x.to("meta") if isinstance(x, torch.Tensor) else x  # noqa: E731
    litefocus.apply(unet, ratio=0.1, **FORMS[form])
    with torch.no_grad():
        out = unet(*map(to_meta, args), **{k: to_meta(v) for k, v in kwargs.items()})[0]
    assert out.device.type == "meta" and out.shape == args[0].shape
