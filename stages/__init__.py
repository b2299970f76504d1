"""The stage scripts of the DVC pipeline: what ``dvc.yaml`` runs, and nothing else.

Each stage runs as ``python -m stages.<name>`` from the repository root (see dvc.yaml), so the
code of the checkout being run is the code that is imported, also in ``dvc exp run --queue``
copies. The logic they share lives in the ``digits`` package; each ends with
``digits.entry.run(main)``, which sets the process up.
"""
