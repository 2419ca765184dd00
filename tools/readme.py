"""Fill README.md's blocks from the files that hold their content, so that no figure in it is typed by hand.

A block is the text between `<!-- from: PATH -->` and `<!-- end -->`: it becomes PATH's content (a
file the pipeline or a benchmark writes), framed as Markdown for a `.md` file and as a code block
otherwise. `<!-- from: PATH columns: A; B -->` takes only the first Markdown table of PATH, with
the columns named A and B, in that order; `where: C=V` after them keeps only the rows whose column C
holds V, and `rows: N` last keeps the first N rows left (a wide or long table's front-door view).
After a retrain, `python tools/readme.py` brings the README up to date; `--check` exits 1 where a
block differs from its file (tests/test_readme.py runs it).

    python tools/readme.py            # rewrite the blocks
    python tools/readme.py --check    # exit 1 if any block is stale
    python tools/readme.py --show metrics/leaderboard.md   # print that file as README's block shows it
"""

import argparse
import re
import sys
from itertools import dropwhile, takewhile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(
    r"(<!-- from: (?P<path>\S+)(?: columns: (?P<columns>[^>]*?))?(?: where: (?P<where>[^>=]+=[^>]*?))?"
    r"(?: rows: (?P<rows>\d+))? -->\n)"
    r"(?P<body>.*?)(?P<end><!-- end -->)",
    re.S,
)


def cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_columns(text, path, columns, first=None, where=None):
    """The first Markdown table in text, cut down to `columns` (names, in the order wanted), to the rows where
    column `where[0]` holds `where[1]`, and to its first rows."""
    lines = dropwhile(lambda line: not line.startswith("|"), text.splitlines())
    rows = list(takewhile(lambda line: line.startswith("|"), lines))  # the first table alone
    if len(rows) < 2:
        sys.exit(f"error: {path} holds no Markdown table to take columns from")
    header = cells(rows[0])
    unknown = [c for c in columns + ([where[0]] if where else []) if c not in header]
    if unknown:
        sys.exit(f"error: {path} has no column {unknown[0]!r}: its columns are {', '.join(header)}")
    if where:
        rows = rows[:2] + [row for row in rows[2:] if cells(row)[header.index(where[0])] == where[1]]
    rows = rows[: 2 + first] if first else rows
    keep = [header.index(c) for c in columns]
    return "".join("| " + " | ".join(cells(row)[i] for i in keep) + " |\n" for row in rows)


def body(path, columns=None, first=None, where=None):
    text = (ROOT / path).read_text(encoding="utf-8").rstrip("\n") + "\n"
    if columns:
        condition = [part.strip() for part in where.split("=", 1)] if where else None
        return table_columns(text, path, [c.strip() for c in columns.split(";")], first, condition)
    return text if path.endswith(".md") else f"```text\n{text}```\n"


def block_body(m):
    """A block's new body from its file; a missing file is a one-line error."""
    if not (ROOT / m["path"]).is_file():
        sys.exit(f"error: {m['path']} is missing: run the stage or benchmark that writes it first")
    return body(m["path"], m["columns"], m["rows"] and int(m["rows"]), m["where"])


def filled(readme):
    """README text with every block replaced by its file's content."""
    return BLOCK.sub(lambda m: m.group(1) + block_body(m) + m["end"], readme)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 where a block differs from its file")
    parser.add_argument("--show", metavar="PATH", help="print PATH as README's block from it shows it")
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    args = parser.parse_args(argv)
    readme = Path(args.readme).read_text(encoding="utf-8")
    if args.show:
        blocks = [m for m in BLOCK.finditer(readme) if m["path"] == args.show]
        if not blocks:
            sys.exit(f"error: README.md has no block from {args.show}")
        sys.stdout.write(block_body(blocks[0]))
        return
    new = filled(readme)
    if args.check:
        stale = [m["path"] for m, n in zip(BLOCK.finditer(readme), BLOCK.finditer(new)) if m["body"] != n["body"]]
        if stale:
            sys.exit(f"error: README.md's block from {stale[0]} is stale: run python tools/readme.py")
        return
    Path(args.readme).write_text(new, encoding="utf-8")


if __name__ == "__main__":
    main()
