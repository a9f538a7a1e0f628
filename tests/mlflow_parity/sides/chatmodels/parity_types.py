"""The chatmodels side's `parity_types`: what tests/mlflow_parity/models import."""

from chatmodels import *  # noqa: F403
