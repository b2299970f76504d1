"""A local team stack (S3 object store, PostgreSQL, MLflow server with login): ``make stack``."""
