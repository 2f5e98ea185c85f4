"""The study file reference page, generated from the packaged JSON schemas.

Every key of ``ptycho/schemas/study.schema.yaml`` (and of the run configuration,
``config.schema.yaml``) becomes one table row: its dotted path, type, default, allowed values or
bounds, and the schema's ``description``. The page is never edited by hand::

    python -m ptycho.docs_reference                 # writes docs/reference/study.md
    python -m ptycho.docs_reference --check         # exit 1 when the page on disk is stale

Path notation: ``a.b`` is key ``b`` of mapping ``a``; ``a[]`` is an item of list ``a``;
``<name>`` stands for a key the user chooses (an overlap view) or for one of several keys that
share a definition (``scales.<scale>``: ``scaled`` and ``full``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ptycho.config import load_schema

DEFAULT_OUT = Path("docs") / "reference" / "study.md"
GENERATOR = "python -m ptycho.docs_reference"


@dataclass
class Row:
    path: str
    type: str
    default: str
    allowed: str
    description: str
    has_description: bool


def _resolve(schema: dict, root: dict) -> tuple[dict, str | None]:
    """``schema`` with a local ``$ref`` merged in (the referring schema's own keywords win), and
    the name of the referenced definition (None without a ``$ref``)."""
    ref = schema.get("$ref")
    if not ref:
        return schema, None
    if not ref.startswith("#/"):
        raise ValueError(f"only local references are supported, got {ref!r}")
    target = root
    for part in ref[2:].split("/"):
        target = target[part]
    target, _ = _resolve(target, root)
    merged = {k: v for k, v in target.items()}
    for k, v in schema.items():
        if k == "$ref":
            continue
        if k == "properties" and "properties" in target:
            props = dict(target["properties"])
            for name, sub in v.items():
                props[name] = {**props.get(name, {}), **sub}
            merged["properties"] = props
        else:
            merged[k] = v
    return merged, ref.rsplit("/", 1)[-1]


def _value(v) -> str:
    """A default or enum value as it would be written in YAML."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v) if v == "" else v
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def _type(schema: dict, root: dict) -> str:
    types = schema.get("type")
    if types is None:
        return "any"
    types = types if isinstance(types, list) else [types]
    out = []
    for t in types:
        if t == "array" and "items" in schema:
            item, _ = _resolve(schema["items"], root)
            it = _type(item, root)
            out.append(f"list of {it}" if " " not in it else f"list of ({it})")
        elif t == "object":
            out.append("mapping")
        else:
            out.append(t)
    return " or ".join(out)


def _bounds(schema: dict) -> list[str]:
    out = []
    if "minimum" in schema:
        out.append(f"≥ {_value(schema['minimum'])}")
    if "exclusiveMinimum" in schema:
        out.append(f"> {_value(schema['exclusiveMinimum'])}")
    if "maximum" in schema:
        out.append(f"≤ {_value(schema['maximum'])}")
    if "exclusiveMaximum" in schema:
        out.append(f"< {_value(schema['exclusiveMaximum'])}")
    if "multipleOf" in schema:
        out.append(f"multiple of {_value(schema['multipleOf'])}")
    return out


def _allowed(schema: dict, root: dict) -> str:
    parts = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{_value(v)}`" for v in schema["enum"]))
    parts += _bounds(schema)
    if "pattern" in schema:
        parts.append(f"matches `{schema['pattern']}`")
    if schema.get("minLength") == 1:
        parts.append("non-empty")
    elif "minLength" in schema:
        parts.append(f"at least {schema['minLength']} characters")
    lo, hi = schema.get("minItems"), schema.get("maxItems")
    if lo is not None and lo == hi:
        parts.append(f"exactly {lo} items")
    else:
        if lo:
            parts.append(f"at least {lo} item" + ("s" if lo > 1 else ""))
        if hi is not None:
            parts.append(f"at most {hi} items")
    if schema.get("uniqueItems"):
        parts.append("no repeats")
    if "minProperties" in schema:
        n = schema["minProperties"]
        parts.append(f"at least {n} entr" + ("ies" if n > 1 else "y"))
    names = schema.get("propertyNames", {}).get("pattern")
    if names:
        parts.append(f"names match `{names}`")
    if "items" in schema and isinstance(schema["items"], dict):
        item, _ = _resolve(schema["items"], root)
        if item.get("type") != "object":
            inner = _allowed(item, root)
            if inner:
                parts.append(f"each: {inner}")
    return "; ".join(parts)


def _default(schema: dict, required: bool) -> str:
    if "default" in schema:
        d = schema["default"]
        if d == {} and schema.get("type") == "object":
            return "`{}` (every key at its default)"
        return f"`{_value(d)}`"
    return "*required*" if required else "—"


def _text(s: str) -> str:
    """One line of Markdown table text: ``|`` escaped, and ``<`` before a letter (``<scale>``)
    written as an entity so that it is not read as an HTML tag."""
    s = " ".join(str(s).split()).replace("|", "\\|")
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", s)


def _rows(schema: dict, root: dict, path: str, required: bool, out: list[Row]) -> None:
    """Append the row of ``schema`` at ``path`` and those of every key below it."""
    schema, _ = _resolve(schema, root)
    desc = schema.get("description")
    desc = desc if isinstance(desc, str) and desc.strip() else ""
    out.append(Row(path, _type(schema, root), _default(schema, required),
                   _allowed(schema, root), _text(desc), bool(desc)))
    _children(schema, root, path, out)


def _children(schema: dict, root: dict, path: str, out: list[Row]) -> None:
    prefix = f"{path}." if path else ""
    props = schema.get("properties") or {}
    need = set(schema.get("required", ()))
    refs = {_resolve(p, root)[1] for p in props.values()}
    if len(props) > 1 and len(refs) == 1 and None not in refs:
        # sibling keys sharing one definition (scales.scaled, scales.full): documented once as
        # <definition>, their rows merged (a default that differs is listed per key)
        _shared(props, root, f"{prefix}<{refs.pop()}>", need, out)
    else:
        for name, sub in props.items():
            _rows(sub, root, prefix + name, name in need, out)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        key = "<" + schema.get("x-key-name", "name") + ">"
        _rows(extra, root, prefix + key, False, out)
    items = schema.get("items")
    if isinstance(items, dict) and "array" in _as_list(schema.get("type")):
        item, _ = _resolve(items, root)
        if item.get("type") == "object":
            _children(item, root, f"{path}[]", out)


def _as_list(t) -> list:
    return t if isinstance(t, list) else [t]


def _shared(props: dict, root: dict, path: str, need: set, out: list[Row]) -> None:
    per_key: dict[str, list[Row]] = {}
    for name, sub in props.items():
        rows: list[Row] = []
        _rows(sub, root, path, name in need, rows)
        per_key[name] = rows
    first = next(iter(per_key.values()))
    for i, row in enumerate(first):
        defaults = {name: rows[i].default for name, rows in per_key.items()}
        if len(set(defaults.values())) > 1:
            row.default = "; ".join(f"{name}: {d}" for name, d in defaults.items())
        if i == 0:
            row.description = (f"one mapping for each of {', '.join(f'`{n}`' for n in props)}"
                               + (f": {row.description}" if row.description else ""))
        out.append(row)


def schema_rows(schema: dict) -> list[Row]:
    """One row per key of ``schema`` (the top level itself excluded), in schema order."""
    out: list[Row] = []
    _children(schema, schema, "", out)
    return out


def missing_descriptions(schema: dict) -> list[str]:
    """Paths of the keys of ``schema`` that have no ``description``."""
    return [r.path for r in schema_rows(schema) if not r.has_description]


def _table(rows: list[Row]) -> list[str]:
    lines = ["| Key | Type | Default | Allowed | Description |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r.path}` | {r.type} | {r.default} | {_text(r.allowed) or '—'} | "
                     f"{r.description} |")
    return lines + [""]


def _section_title(row: Row) -> str:
    return f"`{row.path}`"


def reference_markdown(study: dict | None = None, config: dict | None = None) -> str:
    """The Markdown text of the study file reference."""
    study = study if study is not None else load_schema("study")
    config = config if config is not None else load_schema("config")
    rows = schema_rows(study)
    top = [r for r in rows if "." not in r.path and "[" not in r.path and "<" not in r.path]
    lines = [
        "<!-- Generated from ptycho/schemas/*.schema.yaml by "
        f"`{GENERATOR}`; do not edit by hand. -->",
        "",
        "# Study file reference",
        "",
        _text(study.get("description", "")),
        "",
        "Every key a study file may hold, generated from the JSON schema the package and the "
        "workflow validate with (`ptycho/schemas/study.schema.yaml`). A key that is left out "
        "takes its default; a mapping whose default is `{}` may be left out entirely. Paths: "
        "`a.b` is key `b` inside mapping `a`, `a[]` an item of list `a`, and `<name>` a key "
        "you choose (an overlap view's name) or one of several keys that share one definition "
        "(`scales.<scale>` documents both `scales.scaled` and `scales.full`). In YAML, write "
        "large numbers as `1000` or `1.0e+3`: `1e3` is read as text.",
        "",
        "## Top-level keys",
        "",
    ]
    lines += _table(top)
    for head in top:
        below = [r for r in rows if r.path.startswith(head.path + ".")
                 or r.path.startswith(head.path + "[]")]
        if not below:
            continue
        lines += [f"## {_section_title(head)}", ""]
        if head.description:
            lines += [head.description, ""]
        lines += _table(below)
    lines += [
        "## Run configuration (`config/config.yaml`)",
        "",
        "The Snakemake configuration names the study file and where results go "
        "(`ptycho/schemas/config.schema.yaml`); override it on the command line with "
        "`--config study=path/to/study.yaml`.",
        "",
    ]
    lines += _table(schema_rows(config))
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog=GENERATOR,
        description="Write (or with --check, compare) the study file reference generated "
                    "from the package's JSON schemas.")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"page to write or check (default: {DEFAULT_OUT})")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 when the page differs from the generator's output "
                         "or a schema key has no description")
    args = ap.parse_args(argv)
    missing = {name: missing_descriptions(load_schema(name)) for name in ("study", "config")}
    missing = {k: v for k, v in missing.items() if v}
    if missing:
        for name, paths in missing.items():
            print(f"{name}.schema.yaml: keys without a description: {', '.join(paths)}",
                  file=sys.stderr)
        return 1
    text = reference_markdown()
    if args.check:
        current = args.out.read_text() if args.out.is_file() else None
        if current != text:
            why = "does not exist" if current is None else "is stale"
            print(f"{args.out} {why}: regenerate it with `{GENERATOR}` and commit the result",
                  file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
