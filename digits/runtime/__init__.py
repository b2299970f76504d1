"""The process a stage runs in, not the machine learning: how it stops (signals, exit codes,
its ``dvc`` parent), atomic outputs, the filter of TensorFlow's native log, thread budget,
CPU facts and the oneDNN choice, shared command-line options, which modules a script needs,
servers started for a while, copies of the checkout, and the hook that gives the project's
environment its interpreter.
"""
