"""The results store as an export: every measured number with its provenance, as CSV (the document of
``gzoo.api.results_export`` is the JSON)."""

import csv
import io
import json

EXPORT_FIELDS = ("model_id", "metric", "value", "protocol_name", "protocol", "device", "weights_sha256", "dataset",
                 "dataset_sha256", "gzoo_version", "torch_version", "date")


def results_csv(document: dict) -> str:
    """One line per stored result, in the order recorded; ``protocol`` is the whole protocol as JSON."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for result in document["results"]:
        writer.writerow({**result, "protocol_name": result["protocol"]["name"],
                         "protocol": json.dumps(result["protocol"], sort_keys=True)})
    return buffer.getvalue()
