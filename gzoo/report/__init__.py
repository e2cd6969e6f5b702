"""Reports of measured and published numbers: the leaderboard as a table's cells, Markdown, CSV, a
self-contained HTML page (``gzoo.report.html``) and plots of quality against cost (``gzoo.report.plot``,
with matplotlib); the document itself is the JSON.

Plain functions of the leaderboard document that ``gzoo.api.leaderboard`` returns, so Python users and every
output of the command line render it alike.
"""

from gzoo.report.leaderboard import COLUMNS, cells, notes, sources, to_csv, to_markdown, unreproduced
from gzoo.report.numbers import human

__all__ = ["COLUMNS", "cells", "human", "notes", "sources", "to_csv", "to_markdown", "unreproduced"]
