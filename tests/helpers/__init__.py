"""What tests share besides fixtures: generated data, project copies' stores and stages,
browsers, make runs. Test files import from here, never from one another
(``from helpers.idxdata import tiny_split``: ``tests`` is on pytest's pythonpath)."""
