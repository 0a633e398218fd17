"""Speed and memory benchmark of lstmkit against the TensorFlow built-ins.

`lstmkit bench` times each implementation in `implementations.REGISTRY` on
the same inputs and weights, in one process, interleaved round-robin, so
that every implementation runs under the same machine load. The modules:

* `cases`: shapes, modes, length modes, directions, seeded inputs and
  weights;
* `implementations`: the registry, one entry per implementation, and the
  models of lstmkit and the built-ins;
* `raw_ops` and `bounds`: the fused `BlockLSTM` ops and the two
  arithmetic lower bounds;
* `guard`: the check that every LSTM computes what the v1 `dynamic_rnn`
  computes before it is timed;
* `timing`: the timed `tf.function` steps and their statistics;
* `memory`: peak memory of one step, measured in a child process;
* `environment` and `report`: versions, hardware, ratios, tables, JSON and
  CSV;
* `runner`: runs all of the above for a list of cases.
"""
