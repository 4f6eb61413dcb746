"""Keras's ``applications`` path: empty for now - the transfer-learning issue fills it.

The zoo (``fastconv.models.zoo``: vgg16, resnet50, mobilenet, densenet121, ...) builds the same
architectures, but without pretrained weights and with its own signatures (no ``weights=``,
``input_tensor=``, ``classifier_activation=``), so it is not exposed under Keras's names: a
script calling ``VGG16(weights="imagenet")`` must learn that it gets no ImageNet weights.
"""
from ._missing import module_getattr

_HINT = ("keras.applications is not in fastconv yet (the transfer-learning issue adds it); "
         "untrained architectures of the same family are in fastconv.models.zoo "
         "(vgg16, resnet50, mobilenet, densenet121, ...)")

__getattr__ = module_getattr(__name__, every_hint=_HINT)
