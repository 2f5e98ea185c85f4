"""Artifact inventory of a study's result directory: every file with its size and SHA-256.

File format (UTF-8 text)::

    # ptycho-dose artifact inventory: relpath<TAB>size_bytes<TAB>sha256 of every file under <root>
    # excluded: ["artifact_inventory.txt", "verification_report.json", ...]
    data/1e3_dense/summary.json	1234	9f86d0...

Paths are relative to the result directory, POSIX-style, sorted. A reconstruction that stores
a refined probe or refined positions (an arm that refined them, docs/robustness.md) also gets one
line per refined array after the files, with the SHA-256 of the array's bytes (the hash its
``probe_sha256`` / ``positions_sha256`` attribute records)::

    refined	recon/iterative/1e5_dense_probe25_r0.h5	/probe	4e07c1...

A study whose arms refine nothing has no such line. Temporaries of ``atomic_path``
(``.<name>.partial-*``: a result being written, or a killed writer's leftover) are never listed;
the verification fails while one is present. The excluded paths (files that
are written after the inventory, such as the inventory itself, the verification report, the
provenance record and the verifying job's own log and benchmark) are listed in the header, so
``check_inventory`` skips them too. An exclusion is a relative path or an ``fnmatch`` pattern.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from pathlib import Path

from ptycho.data.io import atomic_path, is_partial
from ptycho.errors import PtychoError

HEADER = "# ptycho-dose artifact inventory: relpath<TAB>size_bytes<TAB>sha256 of every file under "
EXCLUDED_PREFIX = "# excluded: "
REFINED_TAG = "refined"


def sha256_file(path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def _norm_excludes(root: Path, exclude) -> list[str]:
    """Exclusions as POSIX paths relative to ``root`` (absolute or cwd-relative paths that lie
    under ``root`` are made relative; patterns and plain relative paths are kept)."""
    out = []
    root_abs = root.resolve()
    for e in exclude or ():
        e = str(e)
        p = Path(e)
        cand = p if p.is_absolute() else Path.cwd() / p
        try:
            rel = cand.resolve().relative_to(root_abs).as_posix()
        except ValueError:
            rel = Path(e).as_posix()
        if rel not in out:
            out.append(rel)
    return out


def _excluded(rel: str, excludes) -> bool:
    return any(rel == e or fnmatch.fnmatchcase(rel, e) for e in excludes)


def _walk(root: Path, excludes) -> list[str]:
    rels = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            if is_partial(name):
                continue
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if not _excluded(rel, excludes):
                rels.append(rel)
    return sorted(rels)


def build_inventory(root, exclude=()) -> list[tuple[str, int, str]]:
    """Sorted ``(relpath, size_bytes, sha256)`` of every file under ``root`` except ``exclude``."""
    root = Path(root)
    if not root.is_dir():
        raise PtychoError(f"{root}: result directory not found")
    excludes = _norm_excludes(root, exclude)
    out = []
    for rel in _walk(root, excludes):
        p = root / rel
        out.append((rel, p.stat().st_size, sha256_file(p)))
    return out


def _is_reconstruction(rel: str) -> bool:
    return rel.endswith(".h5") and rel.split("/", 1)[0] in ("recon", "recon_halves")


def refined_entries(root, entries) -> list[tuple[str, str, str]]:
    """``(relpath, "/probe" | "/positions", sha256)`` of every refined array stored in the
    reconstruction files of ``entries`` (``recon/`` and ``recon_halves/``), the hash recomputed
    from the array. Raises PtychoError for a file whose array no longer matches its recorded
    hash attribute."""
    from ptycho.reconstruct.io import refined_hashes

    out = []
    for rel, _, _ in entries:
        if not _is_reconstruction(rel):
            continue
        for name, (attr, actual) in sorted(refined_hashes(Path(root) / rel).items()):
            if attr is not None and attr != actual:
                raise PtychoError(f"{rel}: /{name} does not match its {name}_sha256 attribute")
            out.append((rel, f"/{name}", actual))
    return out


def write_inventory(entries, path, root=None, exclude=(), refined=()) -> None:
    """Write ``entries`` (from ``build_inventory``) with a header naming the root and exclusions,
    then the ``refined`` lines (from :func:`refined_entries`)."""
    root_txt = str(root) if root is not None else "the result directory"
    excl = _norm_excludes(Path(root), exclude) if root is not None else [str(e) for e in exclude]
    lines = [HEADER + root_txt, EXCLUDED_PREFIX + json.dumps(excl)]
    for rel, size, digest in entries:
        if "\t" in rel or "\n" in rel:
            raise PtychoError(f"cannot list a file name with a tab or newline: {rel!r}")
        lines.append(f"{rel}\t{int(size)}\t{digest}")
    for rel, name, digest in refined:
        lines.append(f"{REFINED_TAG}\t{rel}\t{name}\t{digest}")
    with atomic_path(path, ".txt") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def read_inventory(path) -> list[tuple[str, int, str]]:
    """Entries of an inventory file (header lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise PtychoError(f"{path}: inventory not found")
    out = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line or line.startswith(("#", REFINED_TAG + "\t")):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1].isdigit() or len(parts[2]) != 64:
            raise PtychoError(f"{path}, line {i}: expected relpath<TAB>size<TAB>sha256, got {line!r}")
        out.append((parts[0], int(parts[1]), parts[2]))
    return out


def read_refined(path) -> list[tuple[str, str, str]]:
    """The refined-array lines of an inventory: ``(relpath, "/probe" | "/positions", sha256)``."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.startswith(REFINED_TAG + "\t"):
            continue
        parts = line.split("\t")
        if len(parts) != 4 or parts[2] not in ("/probe", "/positions") or len(parts[3]) != 64:
            raise PtychoError(f"{path}, line {i}: expected refined<TAB>relpath<TAB>/probe or "
                              f"/positions<TAB>sha256, got {line!r}")
        out.append((parts[1], parts[2], parts[3]))
    return out


def inventory_excludes(path) -> list[str]:
    """The exclusion list stated in an inventory's header ([] if none)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(EXCLUDED_PREFIX):
            return list(json.loads(line[len(EXCLUDED_PREFIX):]))
        if line and not line.startswith("#"):
            break
    return []


def check_inventory(path, root) -> list[str]:
    """Mismatches between an inventory and the files under ``root`` now: missing, changed size or
    hash, and files on disk the inventory does not list (its exclusions apply). [] if identical."""
    root = Path(root)
    entries = read_inventory(path)
    excludes = inventory_excludes(path)
    problems = []
    listed = set()
    for rel, size, digest in entries:
        listed.add(rel)
        p = root / rel
        if not p.is_file():
            problems.append(f"{rel}: listed but missing")
            continue
        actual = p.stat().st_size
        if actual != size:
            problems.append(f"{rel}: size {actual} bytes, inventory says {size}")
            continue
        if sha256_file(p) != digest:
            problems.append(f"{rel}: sha256 differs from the inventory")
    if root.is_dir():
        for rel in _walk(root, excludes):
            if rel not in listed:
                problems.append(f"{rel}: on disk but not in the inventory")
    else:
        problems.append(f"{root}: result directory not found")
        return problems
    problems += _check_refined(path, root, entries)
    return problems


def _check_refined(path, root: Path, entries) -> list[str]:
    """The refined arrays stored in the reconstruction files against the inventory's lines: each
    listed array present with the listed hash (recomputed from the array and as its attribute
    records it), and every stored one listed."""
    from ptycho.errors import DatasetError
    from ptycho.reconstruct.io import refined_hashes

    listed = {(rel, name): digest for rel, name, digest in read_refined(path)}
    problems = []
    on_disk = {}
    for rel, _, _ in entries:
        p = root / rel
        if not _is_reconstruction(rel) or not p.is_file():
            continue
        try:
            for name, hashes in refined_hashes(p).items():
                on_disk[(rel, f"/{name}")] = hashes
        except DatasetError as exc:
            problems.append(f"{rel}: {exc}")
    for (rel, name), digest in sorted(listed.items()):
        if (rel, name) not in on_disk:
            problems.append(f"{rel}{name}: refined array listed but not in the file")
            continue
        attr, actual = on_disk[(rel, name)]
        if actual != digest:
            problems.append(f"{rel}{name}: sha256 of the stored array differs from the inventory")
        elif attr is not None and attr != digest:
            problems.append(f"{rel}{name}: its {name[1:]}_sha256 attribute differs from the "
                            "inventory")
    for key in sorted(set(on_disk) - set(listed)):
        problems.append(f"{key[0]}{key[1]}: refined array in the file but not in the inventory")
    return problems


__all__ = [
    "build_inventory",
    "check_inventory",
    "inventory_excludes",
    "read_inventory",
    "read_refined",
    "refined_entries",
    "sha256_file",
    "write_inventory",
]
