"""Correct and deliberately broken LSTMs for the doctor's tests.

`handwritten.py` is one hand-written LSTM and BiLSTM with a switch per
fault. `shapes.py` wraps it as the three kinds of user code: a function
over weight tensors, a Keras layer and a `tf.Module`.
`builtins_wrapped.py` wraps lstmkit's own code and the TensorFlow and
Keras built-ins. `entries.py` lists every case with the faults the doctor
must name, and `examples.py` names a few for the command line.
"""
