"""Recurrent cells: a base with a hoisted input projection, and the v1 LSTM.

A cell here splits one recurrent step into two parts:

* `project_inputs` maps the inputs of every time step at once (one large
  matrix product over `[time, batch, depth]`), and
* `step` does only the recurrent part for one time step.

The sequence driver in `lstmkit.rnn` calls the first once and the second in
its time loop. A new cell variant changes these two methods and inherits
lengths, padding safety and both directions from the driver.
"""

import collections
import logging
import math
import numbers
from typing import Any, Callable, NamedTuple

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)

# Order of the four column blocks of the v1 kernel and bias: input gate i,
# candidate j, forget gate f, output gate o.
GATE_ORDER_TF1 = "ijfo"


class LSTMStateTuple(NamedTuple):
    """State of an LSTM cell, in the v1 field order.

    Attributes:
        c: cell state, `[batch, num_units]`.
        h: output state, `[batch, num_proj or num_units]`.
    """

    c: Any
    h: Any


class RecurrentCell(keras.layers.Layer):
    """Base of every lstmkit cell: an input projection and a recurrent step.

    Subclasses implement `build`, `project_inputs`, `step`, `state_size` and
    `output_size`. `call` runs one step on one batch of inputs, as a v1 cell
    does, by projecting those inputs and stepping once.

    A cell created without `dtype=` takes its variables' dtype from the
    first inputs it is built for by a driver, as the v1 cells do.

    Attributes:
        supports_recurrent_dropout: True when `step` reads an optional
            `weights["h_dropout_mask"]` `[batch, output_size]` and
            multiplies the previous h by it where h feeds a recurrent
            matrix product, and nowhere else. False here, so a subclass
            that adds this sets it to True. `VariationalDropoutCell`
            requires it for recurrent dropout.
    """

    supports_recurrent_dropout = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._dtype_from_inputs = kwargs.get("dtype") is None

    @property
    def state_size(self) -> Any:
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    def project_inputs(self, inputs: tf.Tensor) -> tf.Tensor:
        """Computes the input part of every step at once.

        Args:
            inputs: `[..., input_depth]`, typically `[time, batch, depth]`.

        Returns:
            `[..., projected_depth]`, one row per input row.
        """
        raise NotImplementedError

    def recurrent_weights(self) -> Any:
        """Reads the weights that `step` uses, once before the time loop.

        Reading (and slicing) them outside the loop keeps that work out of
        every iteration. The default returns `None`.
        """
        return None

    def step(
        self, projected: tf.Tensor, state: Any, weights: Any = None
    ) -> tuple[tf.Tensor, Any]:
        """Runs the recurrent part of one step.

        Args:
            projected: `[batch, projected_depth]`, this step's row of
                `project_inputs`.
            state: the previous state, structured as `state_size`.
            weights: the result of `recurrent_weights()`; read here when
                `None`.

        Returns:
            `(output, new_state)` with output `[batch, output_size]`.
        """
        raise NotImplementedError

    def state_dtypes(self, dtype: Any) -> Any:
        """Returns the dtype of each state part for a loop in `dtype`.

        Args:
            dtype: the dtype the loop computes in (the inputs' dtype).

        Returns:
            A structure like `state_size`. Here every part is `dtype`,
            while the LSTM cells keep c in float32 under a mixed-precision
            policy.
        """
        dtype = tf.as_dtype(dtype)
        return tf.nest.map_structure(lambda _: dtype, self.state_size)

    def zero_state(self, batch_size: int | tf.Tensor, dtype: Any) -> Any:
        """Returns an all-zero state for `batch_size` rows.

        Each part has the dtype that `state_dtypes(dtype)` gives it.
        """
        return tf.nest.map_structure(
            lambda size, part_dtype: tf.zeros(
                [batch_size, size], dtype=part_dtype
            ),
            self.state_size,
            self.state_dtypes(dtype),
        )

    def call(self, inputs: tf.Tensor, state: Any) -> tuple[tf.Tensor, Any]:
        """Runs one step, as a v1 cell's `__call__(inputs, state)` does.

        Args:
            inputs: `[batch, input_depth]`.
            state: previous state; `LSTMStateTuple`, v1's `LSTMStateTuple`
                or a plain `(c, h)` tuple for LSTM cells.

        Returns:
            `(output, new_state)`.
        """
        inputs = tf.convert_to_tensor(inputs, dtype=self.compute_dtype)
        depth = getattr(self, "input_depth", None)
        if inputs.shape.rank != 2 or inputs.shape[-1] != depth:
            raise ValueError(
                f"A single step of {self.name} takes inputs [batch, {depth}]; "
                f"got shape {inputs.shape}. Run whole sequences with "
                "lstmkit.dynamic_rnn."
            )
        state = self.normalize_state(state)
        return self.step(self.project_inputs(inputs), state)

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        # Keras would build the cell in its global dtype; a v1 cell takes
        # the dtype of its first inputs, and so does an lstmkit cell.
        if not self.built and self._dtype_from_inputs:
            dtype = getattr(inputs, "dtype", None)
            if dtype is not None and tf.as_dtype(dtype).is_floating:
                policy = self.dtype_policy
                if policy.compute_dtype == policy.variable_dtype:
                    self.dtype_policy = keras.DTypePolicy(
                        tf.as_dtype(dtype).name
                    )
        return super().__call__(inputs, *args, **kwargs)

    def normalize_state(self, state: Any) -> Any:
        """Converts a user-given state to this cell's state structure."""
        return state

    @property
    def deterministic_step(self) -> bool:
        """Whether `step` gives the same results when run again.

        The `derived` kernel runs `step` a second time in the backward
        pass, so a cell that draws random numbers inside `step` returns
        False (while such draws are active) and runs on the `autodiff`
        kernel instead.
        """
        return True

    def read_weight(self, variable: Any) -> tf.Tensor:
        """Reads a variable in the compute dtype.

        Under a mixed-precision policy the variables are float32 and the
        cell computes in float16 or bfloat16; otherwise this only reads.
        """
        value = tf.convert_to_tensor(variable)
        if value.dtype.name != self.compute_dtype:
            value = tf.cast(value, self.compute_dtype)
        return value


@keras.saving.register_keras_serializable(package="lstmkit")
class LSTMCell(RecurrentCell):
    """The `tf.compat.v1.nn.rnn_cell.LSTMCell`, readable and modifiable.

    Same variables, initialization and math as the v1 cell, so
    `cell.set_weights(v1_cell.get_weights())` gives the same numbers. With
    peepholes the cell follows Sak et al., 2014, "Long short-term memory
    recurrent neural network architectures for large scale acoustic
    modeling", as the v1 cell does.

    Equations for one step (`*` is elementwise, `W_x` are the first
    `input_depth` rows of `kernel`, `W_h` the rest):

        z = x @ W_x + h @ W_h + bias             # [batch, 4 * num_units]
        i, j, f, o = split(z, 4)                 # v1 block order
        c' = sigmoid(f + forget_bias [+ w_f_diag * c]) * c
             + sigmoid(i [+ w_i_diag * c]) * activation(j)
        c' = clip(c', -cell_clip, cell_clip)     # if cell_clip is set
        m = sigmoid(o [+ w_o_diag * c']) * activation(c')
        m = clip(m @ projection_kernel, -proj_clip, proj_clip)  # if num_proj
        output = m, state = LSTMStateTuple(c', m)

    `forget_bias` is added at every step and never stored, so the stored
    `bias` starts at zero, as in the v1 cell. Adding it at run time keeps the
    forget gate close to open at the start of training (Gers et al., 2000,
    "Learning to forget").

    Variables, in `cell.weights` order:
        kernel: `[input_depth + h_depth, 4 * num_units]`, rows for x first,
            then rows for h; column blocks i, j, f, o. `h_depth` is
            `num_proj` if set, else `num_units`.
        bias: `[4 * num_units]`, blocks i, j, f, o.
        w_f_diag, w_i_diag, w_o_diag: `[num_units]` each, with peepholes.
        projection_kernel: `[num_units, num_proj]`, with `num_proj`.

    Default initialization (`initializer=None`): Glorot uniform over the whole
    kernel (limit `sqrt(6 / (input_depth + h_depth + 4 * num_units))`),
    Glorot uniform for the peepholes (fan in and fan out `num_units`) and the
    projection, zeros for the bias. An explicit `initializer` replaces all of
    these except the bias, which stays zero.

    Args:
        num_units: size of the cell state.
        use_peepholes: add the diagonal peephole connections.
        cell_clip: if set, clip the cell state to `[-cell_clip, cell_clip]`
            after each step.
        initializer: Keras initializer (object, name or config) for kernel,
            peepholes and projection; `None` for the v1 default.
        num_proj: if set, project the output to this size.
        proj_clip: if set (needs `num_proj`), clip the projected output to
            `[-proj_clip, proj_clip]`.
        forget_bias: added to the forget gate's pre-activation at every step.
        activation: activation of the candidate and of the cell state
            (callable or name); `None` means tanh. A name means what it
            means to the v1 cell, see `v1_activation`.
        **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Example:
        >>> import lstmkit, tensorflow as tf
        >>> cell = lstmkit.LSTMCell(8)
        >>> outputs, state = lstmkit.dynamic_rnn(
        ...     cell, tf.zeros([2, 5, 3]), sequence_length=[5, 2])
        >>> outputs.shape, state.h.shape
        (TensorShape([2, 5, 8]), TensorShape([2, 8]))
    """

    supports_recurrent_dropout = True

    def __init__(
        self,
        num_units: int,
        use_peepholes: bool = False,
        cell_clip: float | None = None,
        initializer: Any = None,
        num_proj: int | None = None,
        proj_clip: float | None = None,
        forget_bias: float = 1.0,
        activation: str | Callable | None = None,
        **kwargs,
    ):
        kwargs.setdefault("name", "lstm_cell")
        super().__init__(**kwargs)
        _check_positive_int("num_units", num_units)
        for option, value in (
            ("cell_clip", cell_clip),
            ("proj_clip", proj_clip),
            ("forget_bias", forget_bias),
        ):
            _check_number(option, value)
        _check_clip("cell_clip", cell_clip)
        _check_clip("proj_clip", proj_clip)
        if not math.isfinite(forget_bias):
            raise ValueError(
                f"forget_bias must be finite; got {forget_bias!r}. The v1 "
                "default is 1.0."
            )
        if num_proj is not None:
            _check_positive_int("num_proj", num_proj)
        if proj_clip is not None and num_proj is None:
            raise ValueError(
                f"proj_clip={proj_clip!r} needs num_proj; set num_proj or "
                "leave proj_clip=None."
            )
        self.num_units = int(num_units)
        self.use_peepholes = bool(use_peepholes)
        self.cell_clip = cell_clip
        self.initializer = initializer
        self.num_proj = None if num_proj is None else int(num_proj)
        self.proj_clip = proj_clip
        self.forget_bias = float(forget_bias)
        self.activation = self._resolve_activation(activation or "tanh")
        self._activation_config = activation
        self.input_depth = None

    def _resolve_activation(self, activation: str | Callable) -> Callable:
        # Names mean what they mean to the v1 cell; KerasLSTMCell overrides
        # this with Keras 3's meanings.
        return v1_activation(activation)

    @property
    def state_size(self) -> LSTMStateTuple:
        return LSTMStateTuple(self.num_units, self.output_size)

    def state_dtypes(self, dtype: Any) -> LSTMStateTuple:
        """Returns the dtypes of c and h for a loop that computes in `dtype`.

        Under a mixed-precision policy (`mixed_float16`, `mixed_bfloat16`)
        c is kept in the variables' dtype, float32, and h in the compute
        dtype. Otherwise both are `dtype`.
        """
        dtype = tf.as_dtype(dtype)
        c_dtype = dtype
        if dtype.name == self.compute_dtype:
            c_dtype = self.cell_state_dtype
        return LSTMStateTuple(c_dtype, dtype)

    @property
    def cell_state_dtype(self) -> tf.DType:
        """dtype of c and of the gate arithmetic: the variables' dtype.

        It differs from the compute dtype only under a mixed-precision
        policy. There the matrix products run in float16 or bfloat16, and
        their sums are cast to float32 before the gates and c are
        computed, so rounding does not accumulate in c over many steps.
        """
        return tf.as_dtype(self.variable_dtype)

    @property
    def output_size(self) -> int:
        return self.num_proj or self.num_units

    def build(self, input_shape: Any) -> None:
        """Creates the variables for inputs of shape `[..., input_depth]`."""
        input_depth = tf.TensorShape(input_shape)[-1]
        if input_depth is None:
            raise ValueError(
                f"The last dimension of the inputs must be known to build "
                f"{self.name}; got input shape {input_shape}."
            )
        self.input_depth = int(input_depth)
        h_depth = self.output_size
        units = self.num_units

        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.input_depth + h_depth, 4 * units),
            initializer=self._weight_initializer(),
        )
        self.bias = self.add_weight(
            name="bias", shape=(4 * units,), initializer="zeros"
        )
        if self.use_peepholes:
            self.w_f_diag = self._add_peephole("w_f_diag")
            self.w_i_diag = self._add_peephole("w_i_diag")
            self.w_o_diag = self._add_peephole("w_o_diag")
        if self.num_proj is not None:
            self.projection_kernel = self.add_weight(
                name="projection_kernel",
                shape=(units, self.num_proj),
                initializer=self._weight_initializer(),
            )
        self.built = True

    def _weight_initializer(self) -> keras.initializers.Initializer:
        # A fresh object per variable: a Keras 3 initializer fixes its seed
        # when created, so one unseeded object would repeat its values in
        # every variable of the same shape. An explicitly seeded initializer
        # still repeats them, as in the v1 cell.
        if self.initializer is None:
            return keras.initializers.GlorotUniform()
        initializer = keras.initializers.get(self.initializer)
        if isinstance(initializer, keras.initializers.Initializer):
            return initializer.__class__.from_config(initializer.get_config())
        return initializer

    def _add_peephole(self, name: str) -> keras.Variable:
        return self.add_weight(
            name=name,
            shape=(self.num_units,),
            initializer=self._weight_initializer(),
        )

    def project_inputs(self, inputs: tf.Tensor) -> tf.Tensor:
        """Computes `x @ W_x + bias` for all rows at once.

        Args:
            inputs: `[..., input_depth]`.

        Returns:
            `[..., 4 * num_units]`, blocks i, j, f, o.
        """
        kernel_x = self.read_weight(self.kernel)[: self.input_depth]
        flat = tf.reshape(inputs, [-1, self.input_depth])
        bias = self.read_weight(self.bias)
        projected = tf.nn.bias_add(tf.matmul(flat, kernel_x), bias)
        leading = tf.shape(inputs)[:-1]
        return tf.reshape(
            projected, tf.concat([leading, [4 * self.num_units]], 0)
        )

    def recurrent_weights(self) -> dict[str, tf.Tensor]:
        """Reads the h rows of the kernel, the peepholes and the projection.

        Returns:
            `{"kernel_h": [h_depth, 4 * num_units]}`, plus `w_f_diag`,
            `w_i_diag`, `w_o_diag` with peepholes and `projection_kernel`
            with `num_proj`.
        """
        weights = {
            "kernel_h": self.read_weight(self.kernel)[self.input_depth :]
        }
        if self.use_peepholes:
            for name in ("w_f_diag", "w_i_diag", "w_o_diag"):
                weights[name] = self.read_gate_weight(getattr(self, name))
        if self.num_proj is not None:
            weights["projection_kernel"] = self.read_weight(
                self.projection_kernel
            )
        return weights

    def read_gate_weight(self, variable: Any) -> tf.Tensor:
        """Reads a weight of the gate arithmetic in `cell_state_dtype`.

        Peepholes and layer-norm gains act on the gates and c, not in a
        matrix product. The value is rounded to the compute dtype first,
        as every weight is, so that eager code, compiled kernels and Keras
        layers (which read variables in the compute dtype) agree.
        """
        return as_dtype(self.read_weight(variable), self.cell_state_dtype)

    def split_gates(self, z: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Splits `[batch, 4 * num_units]` into blocks i, j, f, o."""
        return tuple(tf.split(z, 4, axis=1))

    def step(
        self,
        projected: tf.Tensor,
        state: LSTMStateTuple,
        weights: dict[str, tf.Tensor] | None = None,
    ) -> tuple[tf.Tensor, LSTMStateTuple]:
        """Runs the recurrent part of one LSTM step.

        Args:
            projected: `[batch, 4 * num_units]` from `project_inputs`.
            state: `LSTMStateTuple(c [batch, num_units], h [batch, h_depth])`.
            weights: from `recurrent_weights()`; read here when `None`. An
                optional `h_dropout_mask` `[batch, h_depth]` entry multiplies
                the previous h before the recurrent product.

        Returns:
            `(m, LSTMStateTuple(c', m))` with m `[batch, h_depth]`.
        """
        if weights is None:
            weights = self.recurrent_weights()
        c_prev, h_prev = state
        h_input = h_prev
        if "h_dropout_mask" in weights:
            # Recurrent dropout: one mask per sequence, on the h that feeds
            # the recurrent product only, as Keras applies it.
            h_input = h_prev * weights["h_dropout_mask"]
        z = projected + tf.matmul(h_input, weights["kernel_h"])
        # Under mixed precision c is float32 (see `cell_state_dtype`), and
        # the gates are computed in its dtype. Elsewhere this is a no-op.
        z = as_dtype(z, c_prev.dtype)
        i, j, f, o = self.split_gates(z)

        forget_input = f + self.forget_bias
        input_gate_input = i
        if self.use_peepholes:
            forget_input += weights["w_f_diag"] * c_prev
            input_gate_input += weights["w_i_diag"] * c_prev
        c = tf.sigmoid(forget_input) * c_prev + tf.sigmoid(
            input_gate_input
        ) * self.activation(j)
        if self.cell_clip is not None:
            c = tf.clip_by_value(c, -self.cell_clip, self.cell_clip)

        output_gate_input = o
        if self.use_peepholes:
            output_gate_input += weights["w_o_diag"] * c
        m = tf.sigmoid(output_gate_input) * self.activation(c)
        m = as_dtype(m, projected.dtype)

        if self.num_proj is not None:
            m = tf.matmul(m, weights["projection_kernel"])
            if self.proj_clip is not None:
                m = tf.clip_by_value(m, -self.proj_clip, self.proj_clip)
        return m, LSTMStateTuple(c, m)

    def normalize_state(self, state: Any) -> LSTMStateTuple:
        """Accepts lstmkit's or v1's `LSTMStateTuple` or a `(c, h)` pair.

        Raises:
            ValueError: the state is not a pair of tensors.
        """
        if not isinstance(state, collections.abc.Sequence) or len(state) != 2:
            raise ValueError(
                "An LSTM state must be a pair (c, h), such as "
                f"lstmkit.LSTMStateTuple(c, h); got {type(state).__name__}: "
                f"{state!r:.200}"
            )
        c, h = state
        dtypes = self.state_dtypes(self.compute_dtype)
        return LSTMStateTuple(
            self._as_state_part(c, dtypes.c), self._as_state_part(h, dtypes.h)
        )

    def _as_state_part(self, value: Any, dtype: tf.DType) -> tf.Tensor:
        # A tensor keeps its dtype, so that the drivers report a dtype
        # mismatch as a TypeError naming the state field. Arrays and lists
        # are converted to the dtype the cell keeps that part in.
        if tf.is_tensor(value):
            return tf.convert_to_tensor(value)
        return tf.convert_to_tensor(value, dtype=dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        if self._dtype_from_inputs and not self.built:
            # Keep "dtype from the first inputs" for a cell restored before
            # it was built.
            config["dtype"] = None
        initializer = self.initializer
        if initializer is not None and not isinstance(initializer, str):
            initializer = keras.initializers.serialize(
                keras.initializers.get(initializer)
            )
        activation = self._activation_config
        if activation is not None and not isinstance(activation, str):
            activation = keras.activations.serialize(activation)
        config.update(
            num_units=self.num_units,
            use_peepholes=self.use_peepholes,
            cell_clip=self.cell_clip,
            initializer=initializer,
            num_proj=self.num_proj,
            proj_clip=self.proj_clip,
            forget_bias=self.forget_bias,
            activation=activation,
        )
        return config


def as_dtype(tensor: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Casts `tensor` to `dtype`, adding no op when it already has it."""
    if tensor.dtype == dtype:
        return tensor
    return tf.cast(tensor, dtype)


def v1_activation(activation: str | Callable) -> Callable:
    """Returns the activation function that the v1 cells use for `activation`.

    The v1 cells look names up in tf_keras. tf_keras 2.21 and Keras 3.15
    give the same values on [-6, 6] for every name both define except
    "hard_sigmoid", which tf_keras defines as `clip(0.2 * x + 0.5, 0, 1)`
    and Keras 3 as `clip(x / 6 + 0.5, 0, 1)`. Callables are returned
    unchanged.
    """
    if activation == "hard_sigmoid":
        return v1_hard_sigmoid
    return keras.activations.get(activation)


def v1_hard_sigmoid(x: tf.Tensor) -> tf.Tensor:
    """Computes tf_keras' hard sigmoid, `clip(0.2 * x + 0.5, 0, 1)`."""
    return tf.clip_by_value(0.2 * x + 0.5, 0.0, 1.0)


def takes_dtype_from_inputs(cell: Any) -> bool:
    """Returns True for an unbuilt cell that was created without `dtype=`.

    Such a cell adopts the dtype of the first inputs or of the layer that
    builds it.
    """
    return not cell.built and getattr(cell, "_dtype_from_inputs", False)


def _check_number(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a number or None; got {type(value).__name__} "
            f"{value!r}."
        )


def _check_clip(name: str, value: Any) -> None:
    # A clip c clips to [-c, c]: 0 or less, NaN or Inf gives wrong numbers.
    if value is not None and not 0 < value < math.inf:
        raise ValueError(
            f"{name} must be a positive finite number or None; got "
            f"{value!r}. The cell clips to [-{name}, {name}]."
        )


def _check_positive_int(name: str, value: Any) -> None:
    integral = isinstance(value, numbers.Integral)
    if isinstance(value, bool) or not integral or value < 1:
        raise ValueError(
            f"{name} must be a positive integer; got {value!r}."
        )
