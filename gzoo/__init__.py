"""gzoo: a model zoo and evaluation suite for compressed image-to-image generators."""

__version__ = "0.1.0"
