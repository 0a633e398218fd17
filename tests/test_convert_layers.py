"""Converted weights as lstmkit Keras layers reproduce their sources."""

import numpy as np
import pytest

from lstmkit import convert, layers
from test_convert import (
    LENGTHS,
    OUTPUT_ATOL,
    TORCH_CASES,
    numpy_torch_lstm,
    probe_batch,
    random_torch_state_dict,
    torch_case_id,
    write_tf1_checkpoint,
)


@pytest.mark.parametrize("semantics", ["tf1", "keras"])
@pytest.mark.parametrize("case", TORCH_CASES, ids=torch_case_id)
def test_torch_layers_match_numpy_lstm(case, semantics):
    num_layers, bidirectional, _ = case
    state_dict = random_torch_state_dict(21, *case)
    x = probe_batch(seed=21)
    expected, _, _ = numpy_torch_lstm(x, state_dict, num_layers, bidirectional)

    stack = convert.layers_from_torch_state_dict(
        state_dict, semantics=semantics
    )
    output = x
    for layer in stack:
        output = layer(output)

    kind = layers.Bidirectional if bidirectional else layers.LSTM
    assert len(stack) == num_layers
    assert all(isinstance(layer, kind) for layer in stack)
    np.testing.assert_allclose(output, expected, atol=OUTPUT_ATOL)


@pytest.mark.parametrize("semantics", ["tf1", "keras"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_tf1_checkpoint_layer_matches_session(
    bidirectional, semantics, tmp_path
):
    x = probe_batch(seed=22)
    path, _, computed = write_tf1_checkpoint(
        tmp_path, x, bidirectional, {}, seed=22
    )
    outputs, _ = computed

    layer = convert.layer_from_tf1_checkpoint(
        path,
        bidirectional=bidirectional,
        semantics=semantics,
        return_sequences=True,
    )
    actual = layer(x, sequence_length=LENGTHS)

    expected = np.concatenate(outputs, -1) if bidirectional else outputs
    padded = np.arange(x.shape[1])[None, :] >= LENGTHS[:, None]
    valid = ~padded
    np.testing.assert_allclose(
        np.asarray(actual)[valid], expected[valid], atol=OUTPUT_ATOL
    )
    if semantics == "tf1" or bidirectional:
        # A single Keras-semantics LSTM repeats its last output instead.
        assert np.all(np.asarray(actual)[padded] == 0.0), "padding not zero"


def test_to_lstmkit_layer_keeps_v1_options():
    weights = convert.V1Weights(
        kernel=np.random.default_rng(0).uniform(-0.5, 0.5, (7, 16)).astype(
            np.float32
        ),
        bias=np.zeros(16, np.float32),
        forget_bias=0.5,
        w_f_diag=np.full(4, 0.1, np.float32),
        w_i_diag=np.full(4, 0.2, np.float32),
        w_o_diag=np.full(4, 0.3, np.float32),
    )

    layer = convert.to_lstmkit_layer(weights, semantics="tf1")

    assert layer.use_peepholes
    assert layer.cell.forget_bias == 0.5
    np.testing.assert_array_equal(layer.cell.kernel.numpy(), weights.kernel)
