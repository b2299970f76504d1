"""The datasets as files: the catalog of datasets.yaml, fetching and checking downloads, the
IDX format, the processed ``.npz`` splits the stages exchange, and the one image shape they
all share. Pure file and array code: nothing here imports TensorFlow or MLflow.
"""
