"""Deployment: a generator exported to ONNX or OpenVINO IR (fp32 or NNCF int8), checked before it is written,
and loaded back to run.

Sits below the API: it takes a loaded model and never imports api, cli, compress or zoo.
"""

from gzoo.deploy.export import CONFIG, FORMATS, check_request, export
from gzoo.deploy.load import default_calibration, load_export, parse_size

__all__ = ["CONFIG", "FORMATS", "check_request", "default_calibration", "export", "load_export", "parse_size"]
