"""HTML pages of the report's Markdown (the summary, the verdict and answer), readable inline in the
Snakemake report and in a browser.

:func:`markdown_to_html` converts the subset of Markdown the package writes: ``#`` headings,
paragraphs, pipe tables (with ``---:`` right alignment), ``-`` lists, ``**bold**``, ``*italic*``
and ```code```. Table cells reading ``pass``, ``**FAILED**`` or ``note`` get the classes
``pass``, ``fail`` and ``note`` (coloured by :data:`STYLE`). A page's content and its style sit in
one ``<div class="ptycho">`` with every rule scoped to it, so the same file can be inserted into
another page (the Snakemake report's landing page) without restyling it.
"""

from __future__ import annotations

import html
import re

from ptycho.data.io import atomic_path

STYLE = """
.ptycho { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 15px;
          line-height: 1.45; color: #1b1b1b; max-width: 1500px; }
.ptycho h1 { font-size: 1.5em; font-weight: 700; margin: 0.2em 0 0.5em; }
.ptycho h2 { font-size: 1.25em; font-weight: 700; margin: 1.3em 0 0.4em;
             border-bottom: 1px solid #ccc; }
.ptycho h3 { font-size: 1.08em; font-weight: 600; margin: 1.0em 0 0.3em; }
.ptycho p { margin: 0.4em 0 0.7em; }
.ptycho ul { list-style: disc; padding-left: 1.5em; }
.ptycho table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.92em; width: auto; }
.ptycho th, .ptycho td { border: 1px solid #c8c8c8; padding: 3px 7px; vertical-align: top; }
.ptycho th { background: #eef1f5; text-align: left; font-weight: 600; }
.ptycho td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.ptycho tr:nth-child(even) td { background: #fafafa; }
.ptycho td.pass { color: #0a6b1f; font-weight: 600; }
.ptycho td.fail { color: #fff; background: #b3261e; font-weight: 700; }
.ptycho td.note { color: #7a4d00; background: #fff4d6; font-weight: 600; }
.ptycho code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.92em;
               background: #f2f2f2; padding: 0 2px; border-radius: 3px; }
.ptycho code::before, .ptycho code::after { content: none; }
.ptycho .verdict { font-size: 1.2em; padding: 0.5em 0.8em; border-radius: 5px;
                   margin: 0.4em 0 0.8em; }
.ptycho .verdict.ok { background: #e3f4e6; border: 2px solid #2e7d32; }
.ptycho .verdict.bad { background: #fde7e5; border: 2px solid #b3261e; }
/* On the Snakemake report's landing page: widen its narrow description column for these tables,
   and start the page at its top (a vertically centred column taller than the window cannot be
   scrolled to its top). */
.max-w-lg:has(.ptycho) { max-width: none; }
.h-screen.items-center:has(.ptycho) { align-items: flex-start; }
"""

_INLINE = (
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"<em>\1</em>"),
)


def inline(text: str) -> str:
    """Escape ``text`` and convert its inline code, bold and italic."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for p in parts:
        if p.startswith("`") and p.endswith("`") and len(p) > 1:
            out.append(f"<code>{html.escape(p[1:-1])}</code>")
            continue
        s = html.escape(p, quote=False)
        for rx, rep in _INLINE[1:]:
            s = rx.sub(rep, s)
        out.append(s)
    return "".join(out)


def _split_row(line: str) -> list[str]:
    body = line.strip().removeprefix("|")
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    cells = re.split(r"(?<!\\)\|", body)
    return [c.strip().replace("\\|", "|") for c in cells]


def _cell_class(text: str, right: bool) -> str:
    t = text.strip()
    if t == "pass":
        return ' class="pass"'
    if t in ("**FAILED**", "**FAIL**", "FAILED"):
        return ' class="fail"'
    if t == "note":
        return ' class="note"'
    return ' class="num"' if right else ""


def _table(lines: list[str]) -> str:
    head = _split_row(lines[0])
    align = _split_row(lines[1]) if len(lines) > 1 else []
    right = [a.endswith(":") for a in align]
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{inline(h)}</th>" for h in head)
           + "</tr></thead>", "<tbody>"]
    for ln in lines[2:]:
        cells = _split_row(ln)
        tds = []
        for i, c in enumerate(cells):
            r = right[i] if i < len(right) else False
            tds.append(f"<td{_cell_class(c, r)}>{inline(c)}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def markdown_to_html(text: str) -> str:
    """The HTML body of the package's Markdown (see the module docstring)."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        s = ln.strip()
        if not s:
            i += 1
            continue
        if s.startswith("<!--"):
            while i < len(lines) and "-->" not in lines[i]:
                i += 1
            i += 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", s)
        if m:
            n = len(m.group(1))
            out.append(f"<h{n}>{inline(m.group(2))}</h{n}>")
            i += 1
            continue
        if s.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table(block))
            continue
        if s.startswith("- "):
            items = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(lines[i].strip()[2:])
                i += 1
                while (i < len(lines) and lines[i].startswith("  ") and lines[i].strip()
                       and not lines[i].strip().startswith("- ")):
                    items[-1] += " " + lines[i].strip()
                    i += 1
            out.append("<ul>" + "".join(f"<li>{inline(t)}</li>" for t in items) + "</ul>")
            continue
        para = []
        while (i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(("|", "#"))
               and not lines[i].strip().startswith("- ")):
            para.append(lines[i].strip())
            i += 1
        out.append(f"<p>{inline(' '.join(para))}</p>")
    return "\n".join(out)


def verdict_banner(verification: dict) -> str:
    """The coloured one-line verdict (HTML)."""
    from ptycho.reporting.verdict import verdict_line, verification_passed

    cls = "ok" if verification_passed(verification) else "bad"
    return f'<div class="verdict {cls}">{inline(verdict_line(verification))}</div>'


def html_page(title: str, body: str) -> str:
    """A standalone page (UTF-8, the report's style)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title></head>\n<body>\n"
            f"<div class=\"ptycho\"><style>{STYLE}</style>\n{body}\n</div>\n</body></html>\n")


def write_html(path, title: str, body: str) -> None:
    """Write :func:`html_page` to ``path`` atomically."""
    with atomic_path(path, ".html") as tmp:
        tmp.write_text(html_page(title, body), encoding="utf-8")


__all__ = ["STYLE", "html_page", "inline", "markdown_to_html", "verdict_banner", "write_html"]
