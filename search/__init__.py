"""Finding the best model with DVC's own experiments: ranking them on a validation metric
(``search.best``) and a guided Optuna search whose trials are queued experiments
(``search.tune``, over the space declared in ``search.yaml``: ``search.space``).

Nothing here is imported by a stage: these are tools run beside the pipeline, like
``review``, and Optuna (the ``search`` extra) is imported only by ``search.tune``.
"""
