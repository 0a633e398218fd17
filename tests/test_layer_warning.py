"""The unmasked-padding warning of Bidirectional inside compiled code."""

import keras
import numpy as np

import lstmkit

WARNING_TEXT = "no mask or sequence_length was given"


def right_padded_batch() -> np.ndarray:
    x = np.random.default_rng(0).uniform(0.1, 1.0, (4, 5, 3))
    x[1, 3:] = 0.0
    return x.astype(np.float32)


def fit_model(x: np.ndarray, masking: bool, jit_compile: bool = False):
    inputs = keras.Input((5, 3))
    hidden = keras.layers.Masking(0.0)(inputs) if masking else inputs
    layer = lstmkit.layers.Bidirectional(lstmkit.layers.LSTM(2))
    model = keras.Model(inputs, layer(hidden))
    model.compile("adam", "mse", jit_compile=jit_compile)
    model.fit(x, np.zeros([4, 4]), epochs=2, batch_size=2, verbose=0)
    return model


def test_bidirectional_warns_once_in_fit(capfd):
    fit_model(right_padded_batch(), masking=False)

    printed = capfd.readouterr().err
    assert printed.count(WARNING_TEXT) == 1, printed


def test_bidirectional_no_warning_with_masking(capfd):
    fit_model(right_padded_batch(), masking=True)

    assert WARNING_TEXT not in capfd.readouterr().err


def test_bidirectional_warning_skipped_under_xla():
    model = fit_model(right_padded_batch(), masking=False, jit_compile=True)

    assert model.predict(right_padded_batch(), verbose=0).shape == (4, 4)
