"""Fill README.md's blocks from the files that hold their content, so that no figure in it is typed by hand.

A block is the text between `<!-- from: PATH -->` and `<!-- end -->`: it becomes PATH's content (a
file the pipeline or a benchmark writes), framed as Markdown for a `.md` file and as a code block
otherwise. After a retrain, `python tools/readme.py` brings the README up to date; `--check` exits 1
where a block differs from its file (tests/test_readme.py runs it).

    python tools/readme.py            # rewrite the blocks
    python tools/readme.py --check    # exit 1 if any block is stale
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- from: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end -->)", re.S)


def body(path):
    text = (ROOT / path).read_text(encoding="utf-8").rstrip("\n") + "\n"
    return text if path.endswith(".md") else f"```text\n{text}```\n"


def filled(readme):
    """README text with every block replaced by its file's content; a missing file is a one-line error."""
    missing = [m["path"] for m in BLOCK.finditer(readme) if not (ROOT / m["path"]).is_file()]
    if missing:
        sys.exit(f"error: {missing[0]} is missing: run the stage or benchmark that writes it first")
    return BLOCK.sub(lambda m: m.group(1) + body(m["path"]) + m.group(4), readme)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 where a block differs from its file")
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    args = parser.parse_args(argv)
    readme = Path(args.readme).read_text(encoding="utf-8")
    new = filled(readme)
    if args.check:
        stale = [m["path"] for m, n in zip(BLOCK.finditer(readme), BLOCK.finditer(new)) if m["body"] != n["body"]]
        if stale:
            sys.exit(f"error: README.md's block from {stale[0]} is stale: run python tools/readme.py")
        return
    Path(args.readme).write_text(new, encoding="utf-8")


if __name__ == "__main__":
    main()
