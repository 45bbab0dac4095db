#!/usr/bin/env python3
"""Regularizer, constraint and init fixtures: what Keras 3 itself computes, for
`tests/regularizers.rs` to match.

Writes four `.npz` archives into `tests/fixtures/regularizers/` (or the directory given as
the first argument). CI never runs this: the archives are committed. Regenerate with the
pinned versions of `scripts/requirements.txt`:

    venv/bin/python scripts/regularizer_fixtures.py

Everything is float64 and in Keras' layout: a kernel is `(input, 4·units)`, a recurrent
kernel `(units, 4·units)`, a bias `(4·units,)`. The Rust tests transpose to PyTorch's.

- `penalties.npz`: the arrays `kernel`, `recurrent`, `bias` (with exact zeros and negative
  values), and for each regularizer case `{array}/{case}/penalty` (0-d) and
  `{array}/{case}/grad`, the gradient of the penalty by torch autograd through Keras' own
  `__call__`. Cases: `l1`, `l2`, `l1l2` (Keras' string identifiers, so their defaults),
  `l1_explicit` (`L1(0.3)`), `l2_explicit` (`L2(0.2)`), `l1_l2_explicit`
  (`L1L2(l1=0.05, l2=0.1)`), `l1_l2_only_l2` (`L1L2(l2=0.1)`).
- `constraints.npz`: the arrays `kernel`, `recurrent`, `bias`, `bias_small`, and
  `{array}/{case}`: the constraint's output. Cases: `max_norm`, `non_neg`, `unit_norm`,
  `min_max_norm` (string identifiers: defaults), `max_norm_small` (`MaxNorm(0.5)`),
  `min_max_norm_rate` (`MinMaxNorm(0.8, 1.2, rate=0.6)`), and for the 2-D arrays only
  `max_norm_axis1` (`MaxNorm(1.5, axis=1)`), `unit_norm_axis1`, `min_max_norm_axis1`
  (`MinMaxNorm(0.5, 1.0, axis=1)`).
- `activity.npz`: a `keras.layers.LSTM(3, activity_regularizer=L1L2(l1=0.01, l2=0.02))`
  called on `x` `(batch 4, steps 5, features 2)`, for the cases `sequences_state`
  (`return_sequences=True, return_state=True`), `sequences` (`return_state=False`) and
  `last_state` (`return_sequences=False, return_state=True`): `{case}/kernel`,
  `{case}/recurrent_kernel`, `{case}/bias`, `{case}/output`, `{case}/h`, `{case}/c` (the
  states when returned) and `{case}/losses`: `layer.losses` after the call, one value per
  returned tensor, each already divided by the batch size as `Layer.__call__` does. (Keras
  3.15's `divide_no_nan` returns float32 even here, so these are float32-rounded.)
- `unit_forget_bias.npz`: `bias` of a built `keras.layers.LSTM(3, unit_forget_bias=True)`.

The L1 gradient at an exact zero is 0 here: torch's `abs` backward is `sign(x)`, as
TensorFlow's (`_AbsGrad` returns `grad * sign(x)`). JAX's `abs` gives 1 at 0, so the JAX
backend would disagree on exactly those entries; the torch backend is used on purpose.
"""

import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

INPUT_SIZE, UNITS = 3, 2


def regularizer_cases():
    return {
        "l1": keras.regularizers.get("l1"),
        "l2": keras.regularizers.get("l2"),
        "l1l2": keras.regularizers.get("l1l2"),
        "l1_explicit": keras.regularizers.L1(0.3),
        "l2_explicit": keras.regularizers.L2(0.2),
        "l1_l2_explicit": keras.regularizers.L1L2(l1=0.05, l2=0.1),
        "l1_l2_only_l2": keras.regularizers.L1L2(l2=0.1),
    }


def constraint_cases(two_dimensional):
    cases = {
        "max_norm": keras.constraints.get("max_norm"),
        "non_neg": keras.constraints.get("non_neg"),
        "unit_norm": keras.constraints.get("unit_norm"),
        "min_max_norm": keras.constraints.get("min_max_norm"),
        "max_norm_small": keras.constraints.MaxNorm(0.5),
        "min_max_norm_rate": keras.constraints.MinMaxNorm(0.8, 1.2, rate=0.6),
    }
    if two_dimensional:
        cases["max_norm_axis1"] = keras.constraints.MaxNorm(1.5, axis=1)
        cases["unit_norm_axis1"] = keras.constraints.UnitNorm(axis=1)
        cases["min_max_norm_axis1"] = keras.constraints.MinMaxNorm(0.5, 1.0, axis=1)
    return cases


def weight_arrays(rng):
    """Keras-layout weights whose column norms straddle every bound the cases use, with
    exact zeros (one whole kernel column, so a norm of 0 meets Keras' epsilon)."""
    column_scales = np.array([0.2, 0.5, 1.0, 1.5, 2.0, 0.0, 3.0, 0.1])
    kernel = rng.standard_normal((INPUT_SIZE, 4 * UNITS)) * column_scales
    kernel[1, 2] = 0.0
    recurrent = rng.standard_normal((UNITS, 4 * UNITS)) * column_scales[::-1]
    recurrent[0, 0] = 0.0
    bias = rng.standard_normal(4 * UNITS)
    bias *= 2.5 / np.linalg.norm(bias)
    bias[3] = 0.0
    bias_small = rng.standard_normal(4 * UNITS)
    bias_small *= 0.3 / np.linalg.norm(bias_small)
    return {"kernel": kernel, "recurrent": recurrent, "bias": bias, "bias_small": bias_small}


def penalties(arrays):
    out = {}
    for name in ("kernel", "recurrent", "bias"):
        out[name] = arrays[name]
        for case, regularizer in regularizer_cases().items():
            values = torch.tensor(arrays[name], dtype=torch.float64, requires_grad=True)
            penalty = regularizer(values)
            if penalty.requires_grad:
                (grad,) = torch.autograd.grad(penalty, values)
            else:
                # `L1L2()` with both factors 0 returns a constant: its gradient is zero.
                grad = torch.zeros_like(values)
            out[f"{name}/{case}/penalty"] = np.array(float(penalty.detach()))
            out[f"{name}/{case}/grad"] = grad.numpy()
    return out


def constraints(arrays):
    out = {}
    for name, values in arrays.items():
        out[name] = values
        for case, constraint in constraint_cases(values.ndim == 2).items():
            constrained = constraint(torch.tensor(values, dtype=torch.float64))
            out[f"{name}/{case}"] = keras.ops.convert_to_numpy(constrained)
    return out


def activity():
    out = {}
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 5, 2))
    cases = {
        "sequences_state": (True, True),
        "sequences": (True, False),
        "last_state": (False, True),
    }
    for index, (case, (return_sequences, return_state)) in enumerate(cases.items()):
        keras.utils.set_random_seed(index)
        layer = keras.layers.LSTM(
            3,
            activity_regularizer=keras.regularizers.L1L2(l1=0.01, l2=0.02),
            return_sequences=return_sequences,
            return_state=return_state,
        )
        result = layer(x)
        kernel, recurrent_kernel, bias = layer.get_weights()
        out[f"{case}/kernel"] = kernel
        out[f"{case}/recurrent_kernel"] = recurrent_kernel
        out[f"{case}/bias"] = bias
        tensors = list(result) if return_state else [result]
        for key, tensor in zip(("output", "h", "c"), tensors):
            out[f"{case}/{key}"] = keras.ops.convert_to_numpy(tensor)
        out[f"{case}/losses"] = np.array(
            [float(keras.ops.convert_to_numpy(loss)) for loss in layer.losses]
        )
    out["x"] = x
    return out


def unit_forget_bias():
    layer = keras.layers.LSTM(3, unit_forget_bias=True)
    layer.build((None, 5, 2))
    return {"bias": layer.get_weights()[2]}


def main():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("tests/fixtures/regularizers")
    root.mkdir(parents=True, exist_ok=True)
    keras.config.set_floatx("float64")
    arrays = weight_arrays(np.random.default_rng(2018))
    np.savez(root / "penalties.npz", **penalties(arrays))
    np.savez(root / "constraints.npz", **constraints(arrays))
    np.savez(root / "activity.npz", **activity())
    np.savez(root / "unit_forget_bias.npz", **unit_forget_bias())
    print(f"wrote {root}")


if __name__ == "__main__":
    main()
