"""Helpers for the report tests: leaderboard documents built by hand, as gzoo.api.leaderboard returns them (so
nothing is measured), and a parser of the HTML page."""

from html.parser import HTMLParser

PAPER_FID = "FID, Inception-v3 pool3 (TF 2015-12-05); reference: real test images"
SOURCE = "GAN Compression README, released models"


def make_row(model_id: str, *, teacher: str | None = None, macs: float | None = 1e9, latency: float | None = 10.0,
             reported: dict[str, float] | None = None, measured: dict | None = None, params: float | None = 1e6,
             protocol: str | None = PAPER_FID) -> dict:
    """A leaderboard row as gzoo.api.leaderboard builds it; ``reported`` maps metric -> published value."""
    method, _, name = model_id.partition("/")
    task = name.split("-")[0]
    published = [{"metric": m, "value": v, "source": SOURCE, **({"protocol": protocol} if m == "fid" else {})}
                 for m, v in (reported or {}).items()]
    quality = [r for r in published if r["metric"] in ("fid", "miou", "top1")]
    measured = measured or {}
    return {"id": model_id, "method": method, "task": task, "teacher": teacher, "arch": "resnet_generator",
            "input": "3x256x256", "params": params if macs else None, "macs": macs and macs * 0.8,
            "macs_paper": macs, "latency_ms": latency if macs else None, "latency_iqr_ms": 0.5,
            "latency_runs": 10, "latency_spread": 0.5 / latency if macs and latency else None,
            "latency_stable": bool(macs), "latency_settled": bool(macs), "measurable": macs is not None,
            "local": False,
            "reported": quality[0] if quality else None, "measured": measured,
            "measured_headline": next(iter(measured), None),
            "reported_macs_paper": next((r["value"] for r in published if r["metric"] == "macs_paper"), None),
            "reported_all": published, "macs_reduction": None, "latency_speedup": None}


def measurement(value: float | str, name: str, differs: bool | None, images: int = 120) -> dict:
    return {"value": value, "protocol": {"name": name, "images": images}, "protocol_differs": differs,
            "device": "cpu: Test CPU 9000", "weights_sha256": "ab" * 32, "dataset": "/data/testB",
            "dataset_sha256": "cd" * 32, "gzoo_version": "0.1.0", "torch_version": "2.14.1",
            "date": "2024-05-01T12:00:00.000000+00:00"}


def make_board(rows: list[dict]) -> dict:
    return {"gzoo_version": "0.1.0", "torch_version": "2.14.1", "device": "cpu", "cpu": "Test CPU 9000",
            "threads": 2, "latency": "eager PyTorch, batch 1, median of timed runs",
            "results_store": "/x/results.sqlite", "rows": rows}


def sample_board() -> dict:
    """Two tasks: horse2zebra (FID, a teacher and three students, one measured under another protocol, one not
    measurable) and cityscapes (mIoU); one published count that does not reproduce."""
    rows = [
        make_row("original/horse2zebra", macs=56.8e9, latency=500.0, reported={"fid": 65.75}),
        make_row("gan-compression/horse2zebra", teacher="original/horse2zebra", macs=2.55e9, latency=70.0,
                 reported={"fid": 65.12, "params": 0.867e6}, params=886_307,
                 measured={"fid": measurement(71.3, "FID; reference: 120 test zebras", True),
                           "psnr": measurement("inf", "PSNR to the teacher's outputs", None)}),
        make_row("fast-gan-compression/horse2zebra", teacher="original/horse2zebra", macs=2.64e9, latency=60.0,
                 reported={"fid": 65.19, "params": 1.7e6}, params=1_677_638),
        make_row("cat/horse2zebra", teacher="original/horse2zebra", macs=None,
                 reported={"fid": 53.48, "macs_paper": 2.56e9}),
        make_row("original/cityscapes", macs=56.8e9, latency=500.0, reported={"miou": 42.06}),
        make_row("gan-compression/cityscapes", teacher="original/cityscapes", macs=5.59e9, latency=80.0,
                 reported={"miou": 38.63}),
        make_row("omgd/cityscapes-unet", teacher="original/cityscapes", macs=1.22e9, latency=40.0,
                 reported={"miou": 48.91}),
    ]
    return make_board(rows)


class Page(HTMLParser):
    """The parts of a page the tests look at: every start tag, the body rows' cells, and the text of the page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[list[dict]] = []
        self.text: list[str] = []
        self._in_body = False
        self._cell: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag in ("td", "th") and self._in_body:
            self._cell = {"tag": tag, **attributes, "text": ""}
            self.rows[-1].append(self._cell)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data
