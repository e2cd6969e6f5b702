"""Architectures, registered by name. Importing this package registers every family."""

from gzoo.models import cat, classifiers, drn, fritz, omgd, resnet, spade, style, unet  # noqa: F401  (registers the families)
from gzoo.models.directory import load_model_dir, load_state_checked
from gzoo.models.registry import (
    architecture_arguments,
    architecture_kind,
    architecture_table,
    create_model,
    list_architectures,
    register_model,
    signed_range,
    value_range,
)

__all__ = ["architecture_arguments", "architecture_kind", "architecture_table", "create_model", "list_architectures",
           "load_model_dir", "load_state_checked", "register_model",
           "signed_range", "value_range"]
