"""The TF1 contender is the project's model."""

import numpy as np
import pytest
import tensorflow as tf
from helpers.paths import REPO_ROOT

from benchmarks import tf1
from digits.model.networks import build_model
from digits.params import load_params
from digits.params import replace as params_replace


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_tf1_graph_is_the_project_model(padding):
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    params = params_replace(params, padding=padding)
    graph, nodes = tf1.graph(params)
    with graph.as_default():
        variables = tf.compat.v1.trainable_variables()
    assert sum(int(np.prod(v.shape)) for v in variables) == build_model(params).count_params()
    assert nodes["logits"].shape.as_list() == [None, 10]


def test_tf1_contender_refuses_other_models():
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    with pytest.raises(ValueError, match=r"train\.model: 'mlp'"):
        tf1.graph(params_replace(params, model="mlp"))
