"""The one shape every dataset of this pipeline has: MNIST's layout.

Defined once here; the IDX reader, the processed splits, the catalog and the models all check
or build against these.
"""

NUM_CLASSES = 10
IMAGE_SIZE = 28  # pixels, height and width
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)  # one processed image: height, width, grey channel
