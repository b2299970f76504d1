"""MLflow tracking: where the store is, checking and opening it, the run of a model that every
stage logs into, what a run records, promoting a registered version; and the workspace against
a git revision: whether it holds the pipeline's results, and the full-run line `make quick`
ends with. MLflow is imported inside functions, only when tracking is on.
"""
