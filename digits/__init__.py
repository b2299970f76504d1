"""The library behind the pipeline: data formats, the models, training, tracking, figures.

The stage scripts DVC runs live in ``stages/`` and import from here; so do ``review/`` and
``benchmarks/``. Nothing in this package imports a stage script.
"""
