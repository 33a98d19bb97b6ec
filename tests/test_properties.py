"""Property-based tests (hypothesis) of the rotation maths, the hook/fold edit and the checkpoint round trip.

Models are tiny random ones of every family in conftest.TINY_CONFIGS, with the head geometry
(heads, KV heads, head_dim) varied over a small grid and built once each (module cache).
Examples are derandomized and no example database is used, so CI runs the same cases every time.
"""

from __future__ import annotations

import copy
import functools
import math
import tempfile

import numpy as np
import pytest
import torch
import transformers
from conftest import TINY_CONFIGS, model_from_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tarot_eval.edit import architectures, checkpoint, kinds
from tarot_eval.edit.head_edit import HeadEdit

FAMILIES = sorted(TINY_CONFIGS)
BIAS_FAMILIES = ("gpt2", "qwen2")  # the families whose attention reads a value bias
GEOMETRIES = ((4, 2, 8), (3, 1, 6))  # (heads, KV heads, head_dim); GPT-2 always uses KV = heads
DTYPES = (torch.float32, torch.float64, torch.bfloat16)
NUM_LAYERS = 3
ANGLE_LIMIT = float(np.nextafter(np.float32(math.pi / 4), np.float32(0)))  # largest float32 inside pi/4
INIT_STD = 0.2  # 10x the HF default, so that every edit moves the logits by a large fraction of their scale
# Error allowed between two ways of computing the same edit, in machine epsilons of the dtype times the
# largest |value|. Observed (3 layers, all families): <= 17 for float32, <= 4 for float64, <= 22 for
# bfloat16, whose 8-bit mantissa makes 32 epsilons a quarter of the scale: a coarse check there.
TOL_ULPS = {torch.float32: 64, torch.float64: 64, torch.bfloat16: 32}

PROPERTY = settings(
    max_examples=5, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@functools.lru_cache(maxsize=None)
def _float32_model(family: str, heads: int, kv_heads: int, head_dim: int) -> transformers.PreTrainedModel:
    """conftest.tiny_model's recipe (seed 0, non-zero biases) with the head geometry and INIT_STD."""
    torch.manual_seed(0)
    config = TINY_CONFIGS[family]()
    config.initializer_range = INIT_STD
    config.num_attention_heads, config.hidden_size = heads, heads * head_dim
    if family != "gpt2":
        config.num_key_value_heads = kv_heads
    if "head_dim" in config.__dict__:
        config.head_dim = head_dim
    model = model_from_config(config)
    geo = architectures.geometry(model)
    assert (geo.num_heads, geo.num_kv_heads, geo.head_dim) == (heads, kv_heads if family != "gpt2" else heads, head_dim)
    return model


@functools.lru_cache(maxsize=None)
def _model(family: str, geometry: tuple[int, int, int], dtype: torch.dtype) -> transformers.PreTrainedModel:
    model = _float32_model(family, *geometry)
    return model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)


def _tokens() -> torch.Tensor:
    return torch.randint(3, 300, (2, 7), generator=torch.Generator().manual_seed(1))


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(_tokens()).logits


def _tolerance(dtype: torch.dtype, reference: torch.Tensor) -> float:
    return TOL_ULPS[dtype] * torch.finfo(dtype).eps * reference.abs().max().item()


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


@st.composite
def layer_orders(draw) -> tuple[int, ...]:
    """A non-empty set of layers in any order (params follow the order given)."""
    order = draw(st.permutations(range(NUM_LAYERS)))
    return tuple(order[: draw(st.integers(1, NUM_LAYERS))])


BOUNDS = {name: kinds.kind(name).bounds(ANGLE_LIMIT) for name in kinds.names()}


def _param_arrays(shape: tuple[int, ...], low: float, high: float):
    return hnp.arrays(np.float32, shape, elements=st.floats(low, high, width=32))


def edits(geometry: tuple[int, int, int], method: str | None = None):
    """A random edit of the given head geometry, its params inside the default bounds."""

    @st.composite
    def build(draw) -> HeadEdit:
        kind = method or draw(st.sampled_from(kinds.names()))
        layers = draw(layer_orders())
        shape = kinds.kind(kind).param_shape(len(layers), geometry[0], geometry[2])
        return HeadEdit(kind, layers, torch.from_numpy(draw(_param_arrays(shape, *BOUNDS[kind]))))

    return build()


def _draw_model_and_edit(case, family: str, method: str | None = None):
    """Geometry, dtype and edit as separate draws, so a failing example prints each of them."""
    geometry = case.draw(st.sampled_from(GEOMETRIES), label="geometry (heads, kv heads, head_dim)")
    dtype = case.draw(st.sampled_from(DTYPES), label="dtype")
    return _model(family, geometry, dtype), case.draw(edits(geometry, method), label="edit")


# --- the rotation maths -------------------------------------------------------------------------


@settings(PROPERTY, max_examples=25)
@given(
    heads=st.integers(1, 6),
    pairs=st.integers(1, 8),
    dtype=st.sampled_from(DTYPES),
    data=st.data(),
)
def test_rotation_matrices_are_block_diagonal_orthogonal_with_det_one(heads, pairs, dtype, data):
    head_dim = 2 * pairs
    angles = torch.from_numpy(data.draw(hnp.arrays(np.float64, (heads, pairs), elements=st.floats(-math.pi, math.pi))))
    angles = angles.to(dtype)
    m = kinds.kind("rotation").linear_part(angles, head_dim)
    assert m.shape == (heads, head_dim, head_dim) and m.dtype == dtype
    pair = torch.arange(head_dim) // 2
    off_block = pair[:, None] != pair[None, :]
    assert torch.all(m[:, off_block] == 0)
    m64 = m.to(torch.float64)
    eye = torch.eye(head_dim, dtype=torch.float64).expand_as(m64)
    tol = 4 * torch.finfo(dtype).eps
    torch.testing.assert_close(m64 @ m64.transpose(1, 2), eye, rtol=0, atol=tol)
    torch.testing.assert_close(torch.linalg.det(m64), torch.ones(heads, dtype=torch.float64), rtol=0, atol=2 * pairs * tol)
    z = torch.randn(5, heads, head_dim, generator=torch.Generator().manual_seed(heads * pairs)).to(dtype)
    elementwise = kinds.kind("rotation").apply_heads(z, angles).to(torch.float64)
    torch.testing.assert_close(elementwise, torch.einsum("phd,hde->phe", z.to(torch.float64), m64), rtol=0, atol=8 * tol)


# --- the edit on real (tiny) models -------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@PROPERTY
@given(
    geometry=st.sampled_from(GEOMETRIES),
    dtype=st.sampled_from(DTYPES),
    method=st.sampled_from(kinds.names()),
    layers=layer_orders(),
)
def test_identity_params_leave_logits_bit_identical(family, geometry, dtype, method, layers):
    model = _model(family, geometry, dtype)
    base = _logits(model)
    edit = HeadEdit.identity(model, method, layers)
    with edit.attached(model):
        assert torch.equal(_logits(model), base)
    handle = edit.merge(model)
    try:
        assert torch.equal(_logits(model), base)
    finally:
        handle.unmerge()


@pytest.mark.parametrize("family", FAMILIES)
@PROPERTY
@given(case=st.data())
def test_hook_equals_fold(family, case):
    model, edit = _draw_model_and_edit(case, family)
    dtype = next(model.parameters()).dtype
    with edit.attached(model):
        hooked = _logits(model)
    handle = edit.merge(model)
    try:
        folded = _logits(model)
    finally:
        handle.unmerge()
    assert (hooked - folded).abs().max().item() <= _tolerance(dtype, hooked)


@pytest.mark.parametrize("family", FAMILIES)
@PROPERTY
@given(case=st.data())
def test_unfold_restores_the_weights_bit_identically(family, case):
    model, edit = _draw_model_and_edit(case, family)
    before = _weights(model)
    handle = edit.merge(model)
    changed = any(name not in before or not torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    handle.unmerge()
    after = _weights(model)
    assert after.keys() == before.keys()  # a bias fold created (Qwen2 o_proj) is removed again
    assert all(torch.equal(after[name], before[name]) and after[name].dtype == before[name].dtype for name in before)
    assert changed or not _moves_weights(edit)


def _moves_weights(edit: HeadEdit) -> bool:
    """Whether some param is far enough from identity (0 angle or offset, factor 1) to change a bfloat16 weight."""
    identity = edit.kind.identity_value
    return bool(torch.any((edit.params - identity).abs() > 0.1))


def _projection_inputs_around_edit(model, edit: HeadEdit):
    """Each edited layer's projection input just before and just after the edit hook, in one forward pass."""
    sites = architectures.attention_sites(model, edit.layers)
    before, after = {}, {}

    def probe(store, index):
        return lambda module, args: store.__setitem__(index, args[0].detach().clone())

    first = [site.out_proj.register_forward_pre_hook(probe(before, i)) for i, site in enumerate(sites)]
    try:
        with edit.attached(model):  # hooks run in registration order: edit sits between the probes
            last = [site.out_proj.register_forward_pre_hook(probe(after, i)) for i, site in enumerate(sites)]
            try:
                _logits(model)
            finally:
                for handle in last:
                    handle.remove()
    finally:
        for handle in first:
            handle.remove()
    return sites, before, after


@pytest.mark.parametrize("family", FAMILIES)
@PROPERTY
@given(case=st.data())
def test_rescale_scales_each_head_output_about_its_value_bias(family, case):
    model, edit = _draw_model_and_edit(case, family, method="rescale")
    dtype = next(model.parameters()).dtype
    geo = architectures.geometry(model)
    sites, before, after = _projection_inputs_around_edit(model, edit)
    for i, site in enumerate(sites):
        z = before[i].view(*before[i].shape[:-1], geo.num_heads, geo.head_dim).to(torch.float64)
        b = torch.zeros(()) if site.value_bias is None else site.value_bias
        b = b.to(torch.float64)
        factors = edit.params[i].to(dtype).to(torch.float64)[:, None]
        expected = (z - b) * factors + b
        got = after[i].view_as(z).to(torch.float64)
        assert (got - expected).abs().max().item() <= _tolerance(dtype, expected)
        if site.value_bias is None:  # plain families: z * alpha, elementwise exact
            ones, zeros = factors[:, 0] == 1, factors[:, 0] == 0
            assert torch.equal(got[..., ones, :], z[..., ones, :])
            assert torch.all(got[..., zeros, :] == 0)


@pytest.mark.parametrize("family", BIAS_FAMILIES)
@PROPERTY
@given(case=st.data())
def test_value_bias_is_the_fixed_point_of_the_edit(family, case):
    """With zero value weights every head outputs exactly b_V, which (z - b) M + b must leave alone (a kind
    without a constant part: an offset moves it by design)."""
    linear = [name for name in kinds.names() if not kinds.kind(name).has_constant]
    model, edit = _draw_model_and_edit(case, family, case.draw(st.sampled_from(linear), label="kind"))
    model = copy.deepcopy(model)
    dtype = next(model.parameters()).dtype
    geo = architectures.geometry(model)
    with torch.no_grad():
        for block in model.get_submodule(architectures.LAYOUTS[family][0]):
            if family == "gpt2":
                width = geo.num_heads * geo.head_dim
                block.attn.c_attn.weight[:, 2 * width :] = 0
            else:
                block.self_attn.v_proj.weight.zero_()
    # z = sum_j p_j b holds only as well as the attention probabilities sum to 1, and HF's eager
    # attention takes its softmax in float32 even for a float64 model
    precision = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
    base = _logits(model)
    sites, before, after = _projection_inputs_around_edit(model, edit)
    for i, site in enumerate(sites):
        b = site.value_bias.to(torch.float64)
        z = before[i].view(*before[i].shape[:-1], geo.num_heads, geo.head_dim).to(torch.float64)
        assert (z - b).abs().max().item() <= _tolerance(precision, b)  # value_bias is what each query head reads
        assert (after[i].view_as(z).to(torch.float64) - b).abs().max().item() <= _tolerance(precision, b)
    handle = edit.merge(model)
    try:
        folded = _logits(model)
    finally:
        handle.unmerge()
    assert (folded - base).abs().max().item() <= _tolerance(precision, base)


# --- checkpoints ----------------------------------------------------------------------------------


def _bfloat16_value(x: float) -> float:
    return torch.tensor(x).to(torch.bfloat16).item()


@st.composite
def checkpoint_cases(draw):
    """Family, edit (float32/float64/bfloat16 params), bounds and provenance for one checkpoint."""
    family = draw(st.sampled_from(FAMILIES))
    method = draw(st.sampled_from(kinds.names()))
    # bounds exact in bfloat16, so params rounded to any of the dtypes stay inside them
    if kinds.kind(method).fixed_bounds is None:
        limit = _bfloat16_value(draw(st.floats(1e-3, math.pi)))
        low, high = -limit, limit
    else:
        low, high = sorted(_bfloat16_value(draw(st.floats(0, 1))) for _ in range(2))
    layers = draw(layer_orders())
    heads, _, head_dim = GEOMETRIES[0]
    shape = kinds.kind(method).param_shape(len(layers), heads, head_dim)
    dtype = draw(st.sampled_from(DTYPES))
    width = 64 if dtype == torch.float64 else 32
    params = draw(hnp.arrays(np.float64 if width == 64 else np.float32, shape, elements=st.floats(low, high, width=width)))
    json_values = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False))
    provenance = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
    return family, HeadEdit(method, layers, torch.from_numpy(params).to(dtype)), (low, high), provenance


@settings(PROPERTY, max_examples=20)
@given(case=checkpoint_cases())
def test_checkpoint_round_trip_is_exact(case):
    family, edit, bounds, provenance = case
    model = _model(family, GEOMETRIES[0], torch.float32)
    with tempfile.TemporaryDirectory() as directory:
        checkpoint.save(directory, edit, model, bounds=bounds, provenance=provenance)
        loaded = checkpoint.load(directory, model)
        config = checkpoint.TarotConfig.from_pretrained(directory).to_dict()
    assert (loaded.method, loaded.layers) == (edit.method, edit.layers)
    # the file stores float32: float32 and bfloat16 params come back bit-identical, float64 ones rounded to float32
    assert loaded.params.dtype == torch.float32
    assert torch.equal(loaded.params, edit.params.to(torch.float32))
    assert config == {
        "format_version": checkpoint.FORMAT_VERSION,
        "method": edit.method,
        "layers": list(edit.layers),
        "num_heads": GEOMETRIES[0][0],
        "head_dim": GEOMETRIES[0][2],
        "bounds": list(bounds),
        "base_model": {**checkpoint.model_identity(model), "weights": checkpoint.weight_fingerprint(model, edit.layers)},
        "provenance": provenance,
    }
