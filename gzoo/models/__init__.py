"""Architectures, registered by name. Importing this package registers every family."""

from gzoo.models import cat, classifiers, drn, fritz, omgd, resnet, spade, style, unet  # noqa: F401  (registers the families)
from gzoo.models.registry import architecture_arguments, create_model, list_architectures, register_model, value_range

__all__ = ["architecture_arguments", "create_model", "list_architectures", "register_model", "value_range"]
