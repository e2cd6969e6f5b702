"""Reports of measured and published numbers: the leaderboard as a table's cells, Markdown, CSV, a
self-contained HTML page (``gzoo.report.html``) and plots of quality against cost (``gzoo.report.plot``,
with matplotlib); the document itself is the JSON.

Plain functions of the leaderboard document that ``gzoo.api.leaderboard`` returns, so Python users and every
output of the command line render it alike.
"""

from gzoo.report.leaderboard import COLUMNS, cells, notes, sources, to_csv, to_markdown, unreproduced
from gzoo.report.numbers import human
from gzoo.report.output import check_destination, output_format, render, to_json, write_files

__all__ = ["COLUMNS", "cells", "check_destination", "human", "notes", "output_format", "render", "sources", "to_csv",
           "to_json", "to_markdown", "unreproduced", "write_files"]
