"""Learned reconstruction and super-resolution baselines (Keras 3 on TensorFlow): models,
input pipeline, training and prediction.

- :data:`MODELS` / :func:`build_model`: reconstruction models ``cnn_reconstruct`` (report
  §6.2), ``dense_reconstruct``, ``automap`` (Zhu et al. 2018) and ``gan_reconstruct``
  (pix2pix, Isola et al. 2017, on the FBP image or a learned first image), sized from a
  library;
  super-resolution models ``edsr`` (Lim et al. 2017), ``wdsr_b`` (Yu et al. 2018),
  ``srgan`` (Ledig et al. 2017) and ``guided_sr`` (low-resolution XRD-CT + high-resolution
  absorption image), made for a factor;
- :mod:`~tomobench.models.data`: ``tf.data`` streaming of a split, chunk by chunk
  (:class:`Pairs`: which arrays a model learns from), and the input normalisation stored
  with a run;
- :func:`train`: a YAML config → a run folder (model, config, normalisation, history,
  checkpoints; an interrupted run resumes);
- :func:`predict`: a run folder + a library split → a submission ``tomobench score``
  accepts;
- :func:`cross`: every run scored on every library (train on A, test on B), beside FBP.

Needs the ``models`` extra: ``pip install 'tomobench[models]'``.
"""

import os

# The TensorFlow backend (the input pipeline is tf.data), unless the user chose another.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ log lines (CPU features, a missing CUDA driver) are not for users; Python
# errors still surface. TF_CPP_MIN_LOG_LEVEL=0 brings them back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tomobench.models._startup import native_stderr_silenced

try:
    with native_stderr_silenced():
        import keras
        import tensorflow  # noqa: F401  (the input pipeline is tf.data)
except ImportError as error:  # pragma: no cover - depends on the environment
    msg = (
        "tomobench.models needs TensorFlow and Keras 3, which are not installed: "
        "pip install 'tomobench[models]'"
    )
    raise ImportError(msg) from error

if int(keras.__version__.split(".")[0]) < 3:  # pragma: no cover
    msg = f"tomobench.models needs Keras 3, found Keras {keras.__version__}"
    raise ImportError(msg)

from tomobench.models import losses  # noqa: F401  (registers the rmse loss)
from tomobench.models.automap import automap
from tomobench.models.cnn import cnn_reconstruct
from tomobench.models.config import TrainConfig, load_config, parse_config
from tomobench.models.cross import CrossTable, cross
from tomobench.models.data import Normalisation, Pairs, SplitStream
from tomobench.models.dense import dense_reconstruct
from tomobench.models.edsr import edsr
from tomobench.models.errors import ConfigError, RunError
from tomobench.models.guided import guided_sr
from tomobench.models.pix2pix import gan_reconstruct
from tomobench.models.predict import (
    load_run,
    predict,
    reconstruct,
    reconstruct_split,
    superresolve,
    superresolve_split,
)
from tomobench.models.registry import MODELS, RECONSTRUCTION, SUPER_RESOLUTION, build_model
from tomobench.models.srgan import srgan
from tomobench.models.train import train
from tomobench.models.wdsr import wdsr_b

__all__ = [
    "MODELS",
    "RECONSTRUCTION",
    "SUPER_RESOLUTION",
    "ConfigError",
    "CrossTable",
    "Normalisation",
    "Pairs",
    "RunError",
    "SplitStream",
    "TrainConfig",
    "automap",
    "build_model",
    "cnn_reconstruct",
    "cross",
    "dense_reconstruct",
    "edsr",
    "gan_reconstruct",
    "guided_sr",
    "load_config",
    "load_run",
    "parse_config",
    "predict",
    "reconstruct",
    "reconstruct_split",
    "srgan",
    "superresolve",
    "superresolve_split",
    "train",
    "wdsr_b",
]
