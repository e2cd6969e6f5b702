"""gzoo: a model zoo and evaluation suite for compressed image-to-image generators."""

from gzoo.version import __version__

__all__ = ["__version__", "load"]


def load(id_or_dir: str):
    """The ready model (nn.Module in eval mode) of a zoo id or a gzoo model directory.

    A zoo id is pulled (downloaded, verified, converted) on first use.
    """
    from gzoo.api import load as load_model

    return load_model(id_or_dir)
