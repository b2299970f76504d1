"""A trained model put to use: the MLflow pyfunc, the checked loading of a logged model,
image files brought to the training format, ``digits-predict``, the HTTP server of
``make serve`` with its application, and the page to draw a digit on (``make demo``).
"""
