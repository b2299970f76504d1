"""The network and its training: the Keras models built from the ``train`` params, the
training loop, and the checkpoint that lets an interrupted run continue exactly. This is
where TensorFlow is used; this file imports nothing, so importing a sibling package never
loads it.
"""
