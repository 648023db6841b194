"""A self-contained HTML report: headings, paragraphs, tables and PNG figures embedded inline."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: figures go to files
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pamkv.errors import UserError  # noqa: E402

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em} h2{font-size:1.3em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0} figcaption{font-size:.9em;color:#555} img{max-width:100%}
.note{background:#f8f8f0;border-left:4px solid #cc9;padding:.5em 1em}
"""


@dataclass
class Report:
    """Builds one HTML page; :meth:`write` saves it with every figure also as a PNG beside it."""

    title: str
    parts: list[str] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        """A section heading."""
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, note: bool = False) -> None:
        """A paragraph (escaped); ``note`` boxes it."""
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        """A table of already-formatted cells."""
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, fig: Figure, name: str, caption: str) -> None:
        """Embed a matplotlib figure as PNG (and keep the bytes to write ``name``.png)."""
        from io import BytesIO

        buf = BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        png = buf.getvalue()
        self.figures.append((name, png))
        data = base64.b64encode(png).decode()
        self.parts.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def write(self, out_dir: str | Path, filename: str = "report.html") -> Path:
        """Write ``out_dir/<filename>`` and ``out_dir/<figure>.png``; returns the HTML path."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name, png in self.figures:
                (out / f"{name}.png").write_bytes(png)
            page = (
                f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
                + "\n".join(self.parts)
                + "</body></html>"
            )
            path = out / filename
            path.write_text(page)
        except OSError as exc:
            raise UserError(f"cannot write the report to {out}: {exc.strerror or exc}") from exc
        return path
