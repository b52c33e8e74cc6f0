"""The GPU path on a GPU: skipped without CUDA (this CPU, CI); ``benchmarks/gpu_run.sh`` runs them on a lent GPU."""

import pytest
import torch

import litefocus
from litefocus.backends import auto_exact_form
from litefocus.kernel import draw_cross_indices, litefocus_attention, reference_attention

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def level_1(dtype, time_bins=128, freq_bins=8, seed=0):
    """q, k, v ``(2, 8, T F, 32)`` on CUDA as a processor passes them, and the random keys (r = 0.1)."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, time_bins * freq_bins, 8, 32, generator=g).to("cuda", dtype).transpose(1, 2)
               for _ in range(3))
    return q, k, v, draw_cross_indices(time_bins * freq_bins, 0.1, torch.Generator().manual_seed(seed + 1)).cuda()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", ["auto", "sdpa", "flex", "varlen"])
def test_every_backend_equals_the_float64_reference(dtype, backend):
    q, k, v, cross = level_1(dtype)
    out = litefocus_attention(q, k, v, freq_bins=8, cross_indices=cross, backend=backend).double()
    ref = reference_attention(*(x.double() for x in (q, k, v)), freq_bins=8, cross_indices=cross)
    dense = torch.nn.functional.scaled_dot_product_attention(q, k, v).double()
    dense_ref = torch.nn.functional.scaled_dot_product_attention(*(x.double() for x in (q, k, v)))
    floor = float((dense - dense_ref).norm() / dense_ref.norm())  # what the dtype costs dense attention
    assert float((out - ref).norm() / ref.norm()) < 3 * floor + 1e-4


def test_auto_runs_varlen_in_half_precision_on_this_card():
    q, _, _, _ = level_1(torch.bfloat16)
    capability = torch.cuda.get_device_capability()
    assert auto_exact_form(q) == ("varlen" if capability >= (8, 0) else "merged")
    assert auto_exact_form(q.float()) == "merged"


def test_varlen_refuses_float32_by_name():
    q, k, v, cross = level_1(torch.float32)
    with pytest.raises(ValueError, match="float16 and bfloat16 only"):
        litefocus_attention(q, k, v, freq_bins=8, cross_indices=cross, backend="varlen")


def test_a_unet_step_with_litefocus_captures_into_a_cuda_graph():
    """No host synchronisation in a patched UNet call: the whole step captures, and its replay equals eager."""
    from litefocus.models import tiny_audioldm2_pipeline

    unet = tiny_audioldm2_pipeline(seed=0).unet.to("cuda", torch.bfloat16).eval()
    sample = torch.randn(2, 8, 64, 16, device="cuda", dtype=torch.bfloat16)
    context = dict(encoder_hidden_states=torch.randn(2, 8, 16, device="cuda", dtype=torch.bfloat16),
                   encoder_hidden_states_1=torch.randn(2, 6, 32, device="cuda", dtype=torch.bfloat16),
                   return_dict=False)
    timestep = torch.tensor(500, device="cuda")
    with litefocus.enabled(unet, ratio=0.1), torch.no_grad():
        eager = unet(sample, timestep, **context)[0]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            unet(sample, timestep, **context)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = unet(sample, timestep, **context)[0]
        graph.replay()
        torch.cuda.synchronize()
    torch.testing.assert_close(captured, eager)
