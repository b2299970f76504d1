"""MLflow tracking: where the store is, checking and opening it, the run of a model that every
stage logs into, what a run records, promoting a registered version, and whether a git
revision holds the pipeline's results. MLflow is imported inside functions, only when
tracking is on.
"""
