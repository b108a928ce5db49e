"""Training losses, registered with Keras so that a checkpoint that holds its compiled loss
loads by name (``tomobench>rmse``) once :mod:`tomobench.models` is imported."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tomobench", name="rmse")
def rmse(y_true, y_pred):
    """Root mean squared error of each image over its pixels (Keras then averages over the
    batch): the loss of the 2020 report (§7.2)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = tuple(range(1, len(y_pred.shape)))
    mse = ops.mean(ops.square(y_pred - y_true), axis=axes)
    return ops.sqrt(ops.maximum(mse, _FLOOR))  # the gradient of sqrt is infinite at 0


_FLOOR = 1e-12

LOSSES = {"rmse": rmse, "mse": "mean_squared_error", "mae": "mean_absolute_error"}
"""Loss names a config may give, and what Keras is handed for each."""
