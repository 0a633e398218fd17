"""A hand-written LSTM and BiLSTM in TensorFlow with one switch per fault.

Written as user code typically is: a Python loop over time steps. With
the default `Faults()` it follows its convention exactly; each field set
away from its default plants one known fault.
"""

import dataclasses

import numpy as np
import tensorflow as tf

# Gate order, run-time forget bias and stored forget bias per convention.
ORDERS = {"v1": "ijfo", "keras": "ifco", "torch": "ifgo"}
RUNTIME_FORGET_BIAS = {"v1": 1.0, "keras": 0.0, "torch": 0.0}
STORED_FORGET_BIAS = {"v1": 0.0, "keras": 1.0, "torch": 0.0}


@dataclasses.dataclass(frozen=True)
class Faults:
    """The faults planted in one implementation; the defaults plant none.

    Attributes:
        gate_order: the order in which the code splits the gate blocks, or
            None for the convention's own.
        runtime_forget_bias: added to the forget gate at every step, or
            None for the convention's value.
        stored_forget_bias: initial forget block of the bias, or None for
            the convention's value.
        normal_init: draw kernels from N(0, 0.1) instead of the default.
        split_glorot: initialize the input and recurrent parts of a v1
            kernel as two Glorot matrices instead of one.
        use_lengths: False ignores the lengths: every step is valid.
        zero_outputs: write zeros past each row's length.
        copy_state: keep the state at padded steps.
        end_aligned: read a row's steps from the end of the time axis, as
            code written for left-padded batches does.
        multiply_mask: mask by multiplying with 0/1 and feed padding to the
            cell, instead of selecting with tf.where on zeroed padding.
        reverse_back: reverse the backward outputs back to input order.
        whole_axis: reverse the whole time axis instead of each row.
        swap_directions: return [backward | forward] and (bw, fw) states.
        swap_state: return each direction's state in the other order.
        recurrent_from_c: feed c instead of h into the recurrent product.
    """

    gate_order: str | None = None
    runtime_forget_bias: float | None = None
    stored_forget_bias: float | None = None
    normal_init: bool = False
    split_glorot: bool = False
    use_lengths: bool = True
    zero_outputs: bool = True
    copy_state: bool = True
    end_aligned: bool = False
    multiply_mask: bool = False
    reverse_back: bool = True
    whole_axis: bool = False
    swap_directions: bool = False
    swap_state: bool = False
    recurrent_from_c: bool = False


@dataclasses.dataclass(frozen=True)
class Spec:
    """One implementation: its convention and its faults."""

    convention: str
    faults: Faults = Faults()

    @property
    def order(self) -> str:
        return self.faults.gate_order or ORDERS[self.convention]

    @property
    def runtime_forget_bias(self) -> float:
        value = self.faults.runtime_forget_bias
        return RUNTIME_FORGET_BIAS[self.convention] if value is None else value

    @property
    def stored_forget_bias(self) -> float:
        value = self.faults.stored_forget_bias
        return STORED_FORGET_BIAS[self.convention] if value is None else value


def init_weights(spec: Spec, depth: int, units: int) -> dict[str, np.ndarray]:
    """Creates one direction's weights in the convention's storage format."""
    rng = np.random.default_rng()
    gates = 4 * units
    if spec.convention == "torch":
        bound = 1.0 / np.sqrt(units)
        weights = {
            "weight_ih": rng.uniform(-bound, bound, [gates, depth]),
            "weight_hh": rng.uniform(-bound, bound, [gates, units]),
            "bias_ih": rng.uniform(-bound, bound, [gates]),
            "bias_hh": rng.uniform(-bound, bound, [gates]),
        }
        if spec.faults.normal_init:
            weights["weight_ih"] = rng.normal(0.0, 0.1, [gates, depth])
            weights["weight_hh"] = rng.normal(0.0, 0.1, [gates, units])
        forget = _block(spec.order, "f", units)
        weights["bias_ih"][forget] += spec.stored_forget_bias
        return _float32(weights)

    bias = np.zeros([gates])
    bias[_block(spec.order, "f", units)] = spec.stored_forget_bias
    if spec.convention == "v1":
        limit = np.sqrt(6.0 / (depth + units + gates))
        kernel = rng.uniform(-limit, limit, [depth + units, gates])
        if spec.faults.normal_init:
            kernel = rng.normal(0.0, 0.1, kernel.shape)
        if spec.faults.split_glorot:
            limit_x = np.sqrt(6.0 / (depth + gates))
            limit_h = np.sqrt(6.0 / (units + gates))
            kernel = np.concatenate([
                rng.uniform(-limit_x, limit_x, [depth, gates]),
                rng.uniform(-limit_h, limit_h, [units, gates]),
            ])
        return _float32({"kernel": kernel, "bias": bias})

    limit = np.sqrt(6.0 / (depth + gates))
    kernel = rng.uniform(-limit, limit, [depth, gates])
    q, r = np.linalg.qr(rng.normal(0.0, 1.0, [gates, units]))
    recurrent = (q * np.sign(np.diag(r))).T
    if spec.faults.normal_init:
        kernel = rng.normal(0.0, 0.1, kernel.shape)
        recurrent = rng.normal(0.0, 0.1, recurrent.shape)
    return _float32(
        {"kernel": kernel, "recurrent_kernel": recurrent, "bias": bias}
    )


def lstm(
    spec: Spec, x: tf.Tensor, lengths: tf.Tensor, weights: dict
) -> tuple[tf.Tensor, tuple[tf.Tensor, tf.Tensor]]:
    """Runs one direction; returns outputs `[B, T, U]` and `(c, h)`."""
    faults = spec.faults
    kernel_x, kernel_h, bias = _matrices(spec, x.shape[-1], weights)
    time = x.shape[1]
    if not faults.use_lengths:
        lengths = tf.fill(tf.shape(lengths), time)
    valid = tf.sequence_mask(lengths, time)
    if faults.end_aligned:
        shift = time - lengths[:, None]
        index = tf.minimum(tf.range(time)[None, :] + shift, time - 1)
        x = tf.gather(x, index, batch_dims=1)
    if not faults.multiply_mask:
        x = tf.where(valid[:, :, None], x, tf.zeros_like(x))

    units = kernel_h.shape[0]
    c = tf.zeros([tf.shape(x)[0], units], x.dtype)
    h = tf.zeros_like(c)
    outputs = []
    for t in range(time):
        recurrent_input = c if faults.recurrent_from_c else h
        z = x[:, t] @ kernel_x + recurrent_input @ kernel_h + bias
        gates = dict(zip(spec.order, tf.split(z, 4, axis=1)))
        candidate = next(gates[k] for k in "jcg" if k in gates)
        forget = tf.sigmoid(gates["f"] + spec.runtime_forget_bias)
        c_new = forget * c + tf.sigmoid(gates["i"]) * tf.tanh(candidate)
        h_new = tf.sigmoid(gates["o"]) * tf.tanh(c_new)

        if faults.multiply_mask:
            mask = tf.cast(valid[:, t : t + 1], x.dtype)
            outputs.append(h_new * mask)
            c = mask * c_new + (1.0 - mask) * c
            h = mask * h_new + (1.0 - mask) * h
            continue
        step_valid = valid[:, t : t + 1]
        if faults.zero_outputs:
            outputs.append(tf.where(step_valid, h_new, tf.zeros_like(h_new)))
        else:
            outputs.append(h_new)
        if faults.copy_state:
            c = tf.where(step_valid, c_new, c)
            h = tf.where(step_valid, h_new, h)
        else:
            c, h = c_new, h_new
    return tf.stack(outputs, axis=1), (c, h)


def bilstm(
    spec: Spec,
    x: tf.Tensor,
    lengths: tf.Tensor,
    weights_fw: dict,
    weights_bw: dict,
) -> tuple[tf.Tensor, tuple]:
    """Runs both directions; returns concatenated outputs and both states."""
    faults = spec.faults

    def reverse(values: tf.Tensor) -> tf.Tensor:
        if faults.whole_axis:
            return tf.reverse(values, axis=[1])
        return tf.reverse_sequence(values, lengths, seq_axis=1, batch_axis=0)

    output_fw, state_fw = lstm(spec, x, lengths, weights_fw)
    reversed_bw, state_bw = lstm(spec, reverse(x), lengths, weights_bw)
    output_bw = reverse(reversed_bw) if faults.reverse_back else reversed_bw
    halves = [output_fw, output_bw]
    states = [state_fw, state_bw]
    if faults.swap_directions:
        halves, states = halves[::-1], states[::-1]
    return tf.concat(halves, axis=-1), tuple(states)


def ordered_state(spec: Spec, state: tuple, keras_order: bool) -> list:
    """Flattens `(c, h)` pairs into the order the shape returns.

    Keras layers return `[h, c]`, the other shapes `(c, h)`; `swap_state`
    returns the other one.
    """
    flat = []
    for c, h in state if isinstance(state[0], tuple) else [state]:
        pair = [h, c] if keras_order else [c, h]
        flat += pair[::-1] if spec.faults.swap_state else pair
    return flat


def _matrices(spec: Spec, depth: int, weights: dict) -> tuple:
    if spec.convention == "torch":
        bias = weights["bias_ih"] + weights["bias_hh"]
        return (
            tf.transpose(weights["weight_ih"]),
            tf.transpose(weights["weight_hh"]),
            bias,
        )
    if spec.convention == "v1":
        kernel = weights["kernel"]
        return kernel[:depth], kernel[depth:], weights["bias"]
    return weights["kernel"], weights["recurrent_kernel"], weights["bias"]


def _block(order: str, gate: str, units: int) -> slice:
    index = order.index(gate)
    return slice(index * units, (index + 1) * units)


def _float32(weights: dict) -> dict:
    return {
        name: np.asarray(value, np.float32)
        for name, value in weights.items()
    }
