"""Named gallery cases for running `lstmkit doctor` from the command line.

    lstmkit doctor tests/doctor_gallery/examples.py:forget_bias_stored
"""

from lstmkit import doctor

from .handwritten import Faults, Spec
from .shapes import function_adapter, keras_adapter

# v1-style code that stores the forget bias in the bias instead of adding
# it at every step.
forget_bias_stored = function_adapter(
    Spec("v1", Faults(runtime_forget_bias=0.0, stored_forget_bias=1.0)),
    name="forget_bias_stored",
)

# A Keras BiLSTM layer that reverses the whole time axis.
whole_axis_bilstm = keras_adapter(
    Spec("keras", Faults(whole_axis=True)),
    bidirectional=True,
    convention="keras",
    name="whole_axis_bilstm",
)

# Correct v1-style code.
correct_lstm = function_adapter(Spec("v1"), name="correct_lstm")


def _raise(inputs, lengths, weights):
    raise RuntimeError("this implementation always fails")


# Code that raises: the doctor reports the error and exits with 2.
raising = doctor.FunctionAdapter(_raise, weight_format="v1", name="raising")


def _last_output_only(inputs, lengths, weights):
    outputs, state = function_adapter(Spec("v1")).fn(inputs, lengths, weights)
    return outputs[:, -1], state


# Code that returns the last output instead of every step's.
wrong_shape = doctor.FunctionAdapter(
    _last_output_only, weight_format="v1", name="wrong_shape"
)
