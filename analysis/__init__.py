"""Measure self-attention in audio latent diffusion UNets on the (time, freq) grid of the mel latent.

    import analysis
    ds = analysis.measure_sparsity(pipe, "a dog barking", audio_length_in_s=10.24, num_inference_steps=50)
    analysis.choose_blocks(ds)
"""

from . import metrics
from .block_choice import BlockChoice, choose_blocks
from .measure import measure_sparsity, sparsity_dataset
from .recorder import AttentionRecorder, record_attention

__all__ = ["AttentionRecorder", "BlockChoice", "choose_blocks", "measure_sparsity", "metrics", "record_attention",
           "sparsity_dataset"]
