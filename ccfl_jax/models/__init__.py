"""Models: capsule primitives, CapsNet, SegCaps, multi-plane aggregation and CNN baselines.

Every classifier maps ``images [B, Y, X, 1] -> (outputs [B, 2], aux)`` and says with its class
attribute ``output_kind`` whether ``outputs`` are capsule lengths or logits; use
``covid_probability(outputs, model.output_kind)`` for P(covid).
"""

import flax.linen as nn

from ccfl_jax.errors import UnknownModelError
from ccfl_jax.models import baselines
from ccfl_jax.models.capsnet import CapsNet
from ccfl_jax.models.capsules import capsule_length, dynamic_routing, local_routing, squash
from ccfl_jax.models.outputs import COVID_CLASS, covid_probability, predicted_class
from ccfl_jax.models.segcaps import ConvCapsules, SegCaps

MODELS: dict[str, type[nn.Module]] = {
    "capsnet": CapsNet,
    "cnn_small": baselines.CnnSmall,
    "segcaps": SegCaps,
}


def get_model(name: str, **kwargs) -> nn.Module:
    """The model called ``name`` in ``MODELS``, built with ``kwargs``.

    Raises:
      UnknownModelError: if ``name`` is not in ``MODELS``; the message lists the choices.

    Examples:
      >>> get_model('capsnet', routing_iterations=2).routing_iterations
      2
    """
    if name not in MODELS:
        raise UnknownModelError(name, MODELS)
    return MODELS[name](**kwargs)


__all__ = [
    "COVID_CLASS",
    "MODELS",
    "CapsNet",
    "ConvCapsules",
    "SegCaps",
    "capsule_length",
    "covid_probability",
    "dynamic_routing",
    "get_model",
    "local_routing",
    "predicted_class",
    "squash",
]
