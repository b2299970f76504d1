"""The stage scripts of the DVC pipeline: what ``dvc.yaml`` runs, and nothing else.

Each stage runs as ``python -m stages.<name>`` from the repository root (see dvc.yaml), so the
code of the checkout being run is the code that is imported, also in ``dvc exp run --queue``
copies. The logic they share lives in the ``digits`` package.
"""

import os

# TensorFlow's C++ INFO lines (oneDNN, CPU features) say nothing a user can act on; keep
# warnings and errors. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# MLflow draws a progress bar while it copies a model it logs (a few MiB, in well under a
# second), which a pipeline's log shows as one garbled line per training run.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
