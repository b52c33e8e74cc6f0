"""The LiteFocus kernel against the dense masked reference, and its errors."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from litefocus import cross_key_count, draw_cross_indices, focus_mask, litefocus_attention, reference_attention
from litefocus.kernel import (
    UNIONS, exact_attention_by_rows, exact_attention_masked, exact_attention_merged, focus_attention,
)


def qkv(batch, heads, tokens, head_dim, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, tokens, head_dim, generator=g, dtype=dtype) for _ in range(3)]


@settings(max_examples=150, deadline=None)
@given(
    batch=st.integers(1, 2),
    heads=st.integers(1, 3),
    steps=st.integers(1, 9),
    freq_bins=st.sampled_from([1, 2, 3, 8, 16]),
    head_dim=st.sampled_from([4, 8]),
    ratio=st.floats(0.0, 1.0),
    mode=st.sampled_from(["both", "same_only", "cross_only"]),
    seed=st.integers(0, 2**16),
    union=st.sampled_from(UNIONS),
)
def test_kernel_equals_masked_reference(batch, heads, steps, freq_bins, head_dim, ratio, mode, seed, union):
    tokens = steps * freq_bins
    same, cross = mode != "cross_only", mode != "same_only"
    if mode == "cross_only" and cross_key_count(tokens, ratio) == 0:
        ratio = 1.0
    q, k, v = qkv(batch, heads, tokens, head_dim, seed)
    kwargs = dict(freq_bins=freq_bins, ratio=ratio, same_frequency=same, cross_frequency=cross, union=union)
    out = litefocus_attention(q, k, v, generator=torch.Generator().manual_seed(seed), **kwargs)
    ref = reference_attention(q, k, v, generator=torch.Generator().manual_seed(seed), **kwargs)
    assert out.shape == q.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("freq_bins", [2, 3, 8])
def test_explicit_cross_indices_overlapping_own_row_count_once(freq_bins):
    steps = 5
    q, k, v = qkv(2, 2, steps * freq_bins, 8)
    # key 0 is in row 0, key freq_bins + 1 in row 1; 3 appears twice; all overlap some query's own row
    cross = torch.tensor([0, freq_bins + 1, 3, 3, steps * freq_bins - 1])
    out = litefocus_attention(q, k, v, freq_bins=freq_bins, cross_indices=cross)
    ref = reference_attention(q, k, v, freq_bins=freq_bins, cross_indices=cross)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # counting duplicates once is what makes the union exact: a hand-built softmax over the union agrees
    query_in_row0 = 0
    keys = sorted(set(range(0, steps * freq_bins, freq_bins)) | set(cross.tolist()))
    logits = q[0, 0, query_in_row0] @ k[0, 0, keys].T / 8**0.5
    expected = logits.softmax(-1) @ v[0, 0, keys]
    torch.testing.assert_close(out[0, 0, query_in_row0], expected, atol=1e-5, rtol=1e-5)


def test_cross_only_with_all_keys_is_dense_attention():
    q, k, v = qkv(2, 3, 7 * 8, 8)
    out = litefocus_attention(q, k, v, freq_bins=8, ratio=1.0, same_frequency=False)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_single_frequency_bin_is_dense_attention(ratio):
    q, k, v = qkv(2, 2, 13, 8)
    out = litefocus_attention(q, k, v, freq_bins=1, ratio=ratio)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_sparse_attention_differs_from_dense():
    q, k, v = qkv(1, 2, 16 * 8, 8)
    out = litefocus_attention(q, k, v, freq_bins=8, ratio=0.1)
    assert (out - F.scaled_dot_product_attention(q, k, v)).abs().max() > 1e-2


def test_custom_scale_is_used():
    q, k, v = qkv(1, 2, 6 * 4, 8)
    out = litefocus_attention(q, k, v, freq_bins=4, ratio=0.25, scale=0.05, generator=torch.Generator().manual_seed(3))
    ref = reference_attention(q, k, v, freq_bins=4, ratio=0.25, scale=0.05, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert (out - litefocus_attention(q, k, v, freq_bins=4, ratio=0.25, generator=torch.Generator().manual_seed(3))).abs().max() > 1e-3


def test_focus_mask_by_hand():
    # T=3, F=2: tokens 0..5, rows {0,2,4} and {1,3,5}; random keys {2, 3}
    mask = focus_mask(6, 2, torch.tensor([2, 3]))
    expected_query0 = torch.tensor([1, 0, 1, 1, 1, 0], dtype=torch.bool)  # own row + key 3
    expected_query1 = torch.tensor([0, 1, 1, 1, 0, 1], dtype=torch.bool)  # own row + key 2
    assert torch.equal(mask[0], expected_query0) and torch.equal(mask[1], expected_query1)
    assert torch.equal(mask[4], expected_query0) and torch.equal(mask[5], expected_query1)


def test_draw_counts_and_seeds():
    assert cross_key_count(8192, 0.1) == 819 and cross_key_count(10, 0.0) == 0 and cross_key_count(10, 1.0) == 10
    a = draw_cross_indices(100, 0.2, torch.Generator().manual_seed(1))
    b = draw_cross_indices(100, 0.2, torch.Generator().manual_seed(1))
    c = draw_cross_indices(100, 0.2, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.numel() == 20 and a.unique().numel() == 20 and a.min() >= 0 and a.max() < 100


def test_same_seed_same_output_different_seed_different_output():
    q, k, v = qkv(1, 2, 10 * 8, 8)
    run = lambda seed: litefocus_attention(q, k, v, freq_bins=8, ratio=0.1, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(5), run(5))
    assert not torch.allclose(run(5), run(6))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(freq_bins=8, same_frequency=False, cross_frequency=False), "both False"),
        (dict(freq_bins=8, ratio=1.5), r"ratio must lie in \[0, 1\]"),
        (dict(freq_bins=8, ratio=-0.1), r"ratio must lie in \[0, 1\]"),
        (dict(freq_bins=7), "do not form a grid"),
        (dict(freq_bins=8, cross_indices=torch.tensor([0, 99])), r"must lie in \[0, 40\)"),
        (dict(freq_bins=8, cross_indices=torch.tensor([0.0])), "1-D int64"),
        (dict(freq_bins=8, cross_frequency=False, cross_indices=torch.tensor([1])), "drop one"),
        (dict(freq_bins=8, ratio=0.01, same_frequency=False), "nothing to attend"),
        (dict(freq_bins=8, cross_indices=[0, 3]), "1-D int64 tensor"),
        (dict(freq_bins=8.0), "positive int"),
        (dict(freq_bins=0), "positive int"),
        (dict(freq_bins=True), "positive int"),
        (dict(freq_bins=8, ratio="0.1"), r"ratio must lie in \[0, 1\]"),
        (dict(freq_bins=8, ratio=None), r"ratio must lie in \[0, 1\]"),
        (dict(freq_bins=8, ratio=float("nan")), r"ratio must lie in \[0, 1\]"),
        (dict(freq_bins=8, union="sum"), "union must be one of"),
    ],
)
def test_bad_input_errors(kwargs, message):
    q, k, v = qkv(1, 1, 5 * 8, 4)
    with pytest.raises(ValueError, match=message):
        litefocus_attention(q, k, v, **kwargs)
    with pytest.raises(ValueError, match=message):
        reference_attention(q, k, v, **kwargs)


@pytest.mark.parametrize("freq_bins", [2, 3, 8])
def test_concat_counts_a_random_key_in_the_own_row_twice(freq_bins):
    """The authors' form: one softmax over [own row, random keys]; the reference adds log(multiplicity)."""
    steps = 5
    q, k, v = qkv(2, 2, steps * freq_bins, 8)
    cross = torch.tensor([0, freq_bins + 1, 3, steps * freq_bins - 1])
    out = litefocus_attention(q, k, v, freq_bins=freq_bins, cross_indices=cross, union="concat")
    torch.testing.assert_close(out, reference_attention(q, k, v, freq_bins=freq_bins, cross_indices=cross,
                                                        union="concat"), atol=1e-5, rtol=1e-5)
    # by hand, for a query of row 0: its row's keys, then the random keys, key 0 listed twice
    keys = list(range(0, steps * freq_bins, freq_bins)) + cross.tolist()
    logits = q[0, 0, 0] @ k[0, 0, keys].T / 8**0.5
    torch.testing.assert_close(out[0, 0, 0], logits.softmax(-1) @ v[0, 0, keys], atol=1e-5, rtol=1e-5)
    exact = litefocus_attention(q, k, v, freq_bins=freq_bins, cross_indices=cross)
    assert (exact[0, 0, 0] - out[0, 0, 0]).abs().max() > 1e-4  # the two unions differ where a key is in both


def test_concat_with_every_key_is_not_dense_attention():
    q, k, v = qkv(1, 2, 6 * 4, 8)
    dense = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(litefocus_attention(q, k, v, freq_bins=4, ratio=1.0), dense, atol=1e-5, rtol=1e-5)
    assert (litefocus_attention(q, k, v, freq_bins=4, ratio=1.0, union="concat") - dense).abs().max() > 1e-3


@pytest.mark.parametrize("form", [exact_attention_merged, exact_attention_masked, exact_attention_by_rows],
                         ids=["merged", "masked", "by rows"])
def test_the_alternative_forms_of_the_exact_union_equal_the_reference(form):
    q, k, v = qkv(2, 2, 9 * 8, 8)
    cross = draw_cross_indices(9 * 8, 0.2, torch.Generator().manual_seed(7))
    torch.testing.assert_close(form(q, k, v, 8, cross, None),
                               reference_attention(q, k, v, freq_bins=8, cross_indices=cross), atol=1e-5, rtol=1e-5)


def test_the_default_exact_union_corrects_every_duplicate_and_keeps_the_scale():
    """Every random key in some query's own row (cross = a whole row and more): the merged form's duplicate channel
    must take each own-row copy out exactly once, and its padded head dim must not change the default scale."""
    q, k, v = qkv(2, 3, 6 * 4, 8, dtype=torch.float64)
    cross = torch.tensor([0, 4, 8, 12, 16, 20, 1, 7, 22])  # row 0 whole, rows 1, 3 and 2 once each
    ref = reference_attention(q, k, v, freq_bins=4, cross_indices=cross)
    scaled = reference_attention(q, k, v, freq_bins=4, cross_indices=cross, scale=0.3)
    for form in (exact_attention_merged, exact_attention_masked):  # the GPU's default and the CPU's
        assert (form(q, k, v, 4, cross, None) - ref).abs().max() < 1e-12
        assert (form(q, k, v, 4, cross, 0.3) - scaled).abs().max() < 1e-12
    assert (focus_attention(q, k, v, 4, cross) - ref).abs().max() < 1e-12


@pytest.mark.parametrize("union", UNIONS)
@pytest.mark.parametrize("mode", ["both", "same_only", "cross_only"])
def test_the_kernel_runs_on_the_meta_device(union, mode):
    """No data-dependent shape and no host read: what a GPU runs without a synchronisation runs on ``meta``."""
    q, k, v = (torch.empty(2, 8, 64 * 8, 32, device="meta") for _ in range(3))
    cross = torch.empty(51, dtype=torch.int64, device="meta")
    out = focus_attention(q, k, v, 8, None if mode == "same_only" else cross, same_frequency=mode != "cross_only",
                          union=union)
    assert out.shape == q.shape and out.device.type == "meta"


def test_the_output_reshapes_to_tokens_by_channels_without_a_copy():
    """The layout a processor wants, (b, N, h * d), is a view of what the kernel returns (dense SDPA's output needs
    one copy for it; LiteFocus's merge of rows already made that copy)."""
    q, k, v = qkv(2, 4, 6 * 8, 8)
    for union in UNIONS:
        out = litefocus_attention(q, k, v, freq_bins=8, ratio=0.2, union=union)
        assert out.transpose(1, 2).is_contiguous()
        assert out.transpose(1, 2).reshape(2, 48, 32).data_ptr() == out.data_ptr()


def test_reference_computes_in_float64_for_float64_inputs():
    q, k, v = qkv(1, 2, 8 * 4, 8, dtype=torch.float64)
    cross = torch.tensor([1, 6, 17])
    out = litefocus_attention(q, k, v, freq_bins=4, cross_indices=cross)
    ref = reference_attention(q, k, v, freq_bins=4, cross_indices=cross)
    assert ref.dtype == torch.float64
    assert (out - ref).abs().max() < 1e-12


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda q, k, v: (q, k, v[..., :2]), ValueError, "head_dim too"),
        (lambda q, k, v: (q[:, :, :0], k[:, :, :0], v[:, :, :0]), ValueError, "no tokens"),
        (lambda q, k, v: (q.long(), k.long(), v.long()), TypeError, "floating-point"),
        (lambda q, k, v: (q, k, v > 0), TypeError, "value must be a floating-point"),
    ],
)
def test_bad_tensors(change, error, message):
    q, k, v = change(*qkv(1, 1, 5 * 8, 4))
    for fn in (litefocus_attention, reference_attention):
        with pytest.raises(error, match=message):
            fn(q, k, v, freq_bins=8)


@pytest.mark.parametrize("change, kwargs, error, message", [
    (lambda q, k, v: (q, k, v.double()), {}, TypeError, "share one dtype"),
    (lambda q, k, v: (q[:, :0], k[:, :0], v[:, :0]), {}, ValueError, "at least one head"),
    (lambda q, k, v: (q[..., :0], k[..., :0], v[..., :0]), {}, ValueError, "head_dim >= 1"),
    (lambda q, k, v: (q, k, v), dict(scale="a"), ValueError, "scale must be None"),
    (lambda q, k, v: (q, k, v), dict(scale=-1.0), ValueError, "scale must be None"),
    (lambda q, k, v: (q, k, v), dict(generator=5), TypeError, "generator must be a torch.Generator"),
])
def test_bad_arguments_of_the_public_kernel_are_named(change, kwargs, error, message):
    """Issue 22, case 20: mixed dtypes reached SDPA's error (the reference accepted them); empty heads, a string
    scale and an int generator gave tracebacks."""
    q, k, v = change(*qkv(1, 2, 5 * 8, 4))
    with pytest.raises(error, match=message):
        litefocus_attention(q, k, v, freq_bins=8, **kwargs)


def emulated_varlen(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, scale=None):
    """flash varlen attention's contract, one SDPA call per packed sequence (its kernel needs CUDA)."""
    out = torch.empty_like(q)
    for s in range(len(cu_seq_q) - 1):
        qs, ks = slice(cu_seq_q[s], cu_seq_q[s + 1]), slice(cu_seq_k[s], cu_seq_k[s + 1])
        assert cu_seq_q[s + 1] - cu_seq_q[s] <= max_q and cu_seq_k[s + 1] - cu_seq_k[s] <= max_k
        out[qs] = F.scaled_dot_product_attention(q[qs].transpose(0, 1), k[ks].transpose(0, 1), v[ks].transpose(0, 1),
                                                 scale=scale).transpose(0, 1)
    return out


@pytest.mark.parametrize("freq_bins, time_bins, ratio", [(8, 9, 0.2), (3, 5, 0.5), (2, 7, 1.0), (16, 3, 0.1)])
def test_the_varlen_flex_and_by_rows_backends_equal_the_reference(freq_bins, time_bins, ratio):
    from litefocus.backends import flex_focus_attention, varlen_exact_attention

    tokens = freq_bins * time_bins
    q, k, v = qkv(2, 3, tokens, 8, dtype=torch.float64)
    cross = draw_cross_indices(tokens, ratio, torch.Generator().manual_seed(3))
    for union in UNIONS:
        ref = reference_attention(q, k, v, freq_bins=freq_bins, cross_indices=cross, union=union)
        torch.testing.assert_close(flex_focus_attention(q, k, v, freq_bins, cross, None, union), ref)
        torch.testing.assert_close(flex_focus_attention(q, k, v, freq_bins, cross, 0.3, union),
                                   reference_attention(q, k, v, freq_bins=freq_bins, cross_indices=cross, union=union,
                                                       scale=0.3))
    ref = reference_attention(q, k, v, freq_bins=freq_bins, cross_indices=cross)
    torch.testing.assert_close(varlen_exact_attention(q, k, v, freq_bins, cross, None, attention=emulated_varlen), ref)
    for backend in ("flex", "by_rows"):
        out = litefocus_attention(q, k, v, freq_bins=freq_bins, cross_indices=cross, backend=backend)
        torch.testing.assert_close(out, ref)


def test_the_varlen_layout_is_static_and_each_row_gets_its_keys():
    from litefocus.backends import varlen_layout

    cross = torch.tensor([0, 5, 6, 11])  # F = 4, T = 3: rows 0, 1, 2, 3 hold one drawn key each
    index, cu_q, cu_k, max_q, max_k = varlen_layout(2, 12, 4, cross)
    assert index.shape == (2 * (12 + 3 * 4),) and (max_q, max_k) == (3, 7)
    assert cu_q.tolist() == [0, 3, 6, 9, 12, 15, 18, 21, 24] and cu_k.tolist() == list(range(0, 49, 6))
    assert index[:6].tolist() == [0, 4, 8, 5, 6, 11]  # row 0: its own tokens, then the drawn keys of other rows
    assert index[24:30].tolist() == [12, 16, 20, 17, 18, 23]  # the second batch item, offset by N
    meta = varlen_layout(2, 64 * 8, 8, torch.empty(51, dtype=torch.int64, device="meta"))
    assert meta[0].shape == (2 * (512 + 7 * 51),) and meta[0].device.type == "meta"  # no data-dependent shape


def test_backends_are_named_and_checked_against_the_device():
    q, k, v = qkv(1, 1, 16, 4)
    with pytest.raises(ValueError, match="backend must be one of"):
        litefocus_attention(q, k, v, freq_bins=4, backend="triton")
    with pytest.raises(ValueError, match=r"backend='varlen' needs a CUDA device \(these tensors are on cpu\)"):
        litefocus_attention(q, k, v, freq_bins=4, backend="varlen")
    with pytest.raises(ValueError, match="backend='varlen' serves the exact union only"):
        litefocus_attention(q, k, v, freq_bins=4, backend="varlen", union="concat")
    from litefocus import LiteFocusOptions

    with pytest.raises(ValueError, match="backend must be one of"):
        LiteFocusOptions(backend="fast")
    with pytest.raises(ValueError, match="serves the exact union only"):  # issue 29: concat silently ran SDPA
        LiteFocusOptions(backend="varlen", union="concat")
    with pytest.raises(ValueError, match="backend='by_rows' serves the exact union only"):
        LiteFocusOptions(backend="by_rows", union="concat")
    with pytest.raises(ValueError, match="draws must be one of"):
        LiteFocusOptions(draws="each")


@pytest.mark.parametrize("device, dtype, head_dim, capability, union, problem", [
    ("cuda", torch.bfloat16, 32, (9, 0), "exact", None),
    ("cuda", torch.float16, 256, (8, 0), "exact", None),
    ("cuda", torch.float32, 32, (9, 0), "exact", "float16 and bfloat16 only"),
    ("cuda", torch.bfloat16, 320, (9, 0), "exact", "head dims up to 256"),
    ("cuda", torch.float16, 32, (7, 5), "exact", "compute capability 8.0 or more"),  # T4
    ("cuda", torch.float16, 32, (7, 0), "exact", "this card has 7.0"),  # V100
    ("cpu", torch.bfloat16, 32, None, "exact", "needs a CUDA device"),
    ("cuda", torch.bfloat16, 32, (9, 0), "concat", "exact union only"),
])
def test_varlen_names_each_requirement_it_lacks(device, dtype, head_dim, capability, union, problem):
    """Issue 29, item 3: fp32, cards below sm80 and head dims over 256 reached flash deep in a UNet forward."""
    from litefocus.backends import VARLEN_KERNEL_PROBLEM, varlen_problem

    found = varlen_problem(device, dtype, head_dim, capability, union)
    if problem is None:
        assert found == VARLEN_KERNEL_PROBLEM  # None where this torch has varlen_attn with scale= (2.10+)
    else:
        assert problem in found


def test_this_torch_has_the_varlen_kernel_and_auto_runs_the_masked_form_on_a_cpu():
    from litefocus.backends import VARLEN_KERNEL_PROBLEM, auto_exact_form

    assert VARLEN_KERNEL_PROBLEM is None  # torch 2.13: varlen_attn takes scale=
    assert auto_exact_form(torch.zeros(1, 1, 8, 4)) == "masked"


@pytest.mark.parametrize("time_bins, freq_bins, count", [(40, 8, 32), (128, 8, 102), (3, 5, 1), (130, 2, 26),
                                                          (300, 1, 30)])
def test_the_flex_block_structure_holds_every_kept_pair_and_its_full_blocks_are_full(time_bins, freq_bins, count):
    """Issue 29, item 4: the block mask comes from the sizes, not from evaluating the mask over N x (N + R)."""
    from litefocus.backends import FLEX_BLOCK, focus_block_structure

    tokens = time_bins * freq_bins
    cross = torch.randperm(tokens, generator=torch.Generator().manual_seed(0))[:count].sort().values
    q = torch.arange(tokens)[:, None]
    kv = torch.arange(tokens + count)[None, :]
    row = q // time_bins
    own = (kv < tokens) & (kv // time_bins == row)
    drawn = (kv >= tokens) & ((cross % freq_bins)[(kv - tokens).clamp(0, count - 1)] != row)
    keep = (own | drawn).numpy()
    partial, full = focus_block_structure(tokens, time_bins, count)
    for i, (some, whole) in enumerate(zip(partial, full)):
        assert not set(some) & set(whole)
        rows_ = slice(i * FLEX_BLOCK, (i + 1) * FLEX_BLOCK)
        for j in range(-(-(tokens + count) // FLEX_BLOCK)):
            block = keep[rows_, j * FLEX_BLOCK:(j + 1) * FLEX_BLOCK]
            if block.any():
                assert j in some or j in whole, (i, j)
            if j in whole:
                assert block.all(), (i, j)
    if time_bins >= FLEX_BLOCK:  # a query block inside one row: its own key blocks are full, no mask evaluated
        assert any(full)


def test_flex_equals_the_reference_across_several_blocks():
    from litefocus.backends import flex_focus_attention

    freq_bins, time_bins = 8, 40  # 320 queries, 352 keys: three query blocks, partial and full key blocks
    q, k, v = qkv(1, 2, freq_bins * time_bins, 8, dtype=torch.float64)
    cross = draw_cross_indices(freq_bins * time_bins, 0.1, torch.Generator().manual_seed(1))
    for union in UNIONS:
        torch.testing.assert_close(flex_focus_attention(q, k, v, freq_bins, cross, None, union),
                                   reference_attention(q, k, v, freq_bins=freq_bins, cross_indices=cross, union=union))
