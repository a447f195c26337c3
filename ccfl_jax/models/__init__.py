"""Models: capsule primitives, CapsNet, SegCaps, multi-plane aggregation and CNN baselines.

Every classifier maps ``images [B, Y, X, 1] -> (outputs [B, 2], aux)`` and says with its class
attribute ``output_kind`` whether ``outputs`` are capsule lengths or logits; use
``covid_probability(outputs, model.output_kind)`` for P(covid).
"""

import flax.linen as nn

from ccfl_jax.errors import UnknownModelError
from ccfl_jax.models import multiplane
from ccfl_jax.models.baselines import VGG16, AlexNet, CnnSmall, MobileNet, MobileNetV2
from ccfl_jax.models.capsnet import CapsNet
from ccfl_jax.models.capsules import capsule_length, dynamic_routing, local_routing, squash
from ccfl_jax.models.inception import InceptionV3, Xception
from ccfl_jax.models.outputs import COVID_CLASS, covid_probability, predicted_class
from ccfl_jax.models.resnets import DenseNet121, ResNet50, ResNet50V2
from ccfl_jax.models.segcaps import ConvCapsules, SegCaps

MODELS: dict[str, type[nn.Module]] = {
    "capsnet": CapsNet,
    "segcaps": SegCaps,
    "vgg16": VGG16,
    "alexnet": AlexNet,
    "resnet50": ResNet50,
    "resnet50v2": ResNet50V2,
    "inception_v3": InceptionV3,
    "xception": Xception,
    "mobilenet": MobileNet,
    "mobilenet_v2": MobileNetV2,
    "densenet121": DenseNet121,
    "cnn_small": CnnSmall,
}
CLASSIFIERS = tuple(name for name, cls in MODELS.items() if cls.output_kind != "segmentation")
BASELINES = tuple(name for name, cls in MODELS.items() if cls.output_kind == "logits")


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
    "BASELINES",
    "CLASSIFIERS",
    "VGG16",
    "AlexNet",
    "CnnSmall",
    "DenseNet121",
    "InceptionV3",
    "MobileNet",
    "MobileNetV2",
    "ResNet50",
    "ResNet50V2",
    "Xception",
    "COVID_CLASS",
    "MODELS",
    "CapsNet",
    "ConvCapsules",
    "SegCaps",
    "capsule_length",
    "covid_probability",
    "dynamic_routing",
    "get_model",
    "multiplane",
    "local_routing",
    "predicted_class",
    "squash",
]
