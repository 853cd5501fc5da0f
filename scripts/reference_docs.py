"""Write the reference page of every stage's options, ``docs/reference/stages.md``.

The page is rendered by :func:`napari_cryolearn.stage_reference.render_stage_reference` from the
stage registry and each config's ``Field(description=...)`` (the text of ``--help`` and of the
widgets' tooltips). Run it after adding or changing a stage or a field, and commit the page;
``tests/test_docs_reference.py`` fails while the committed page is out of date. From the
repository root::

    .venv/bin/python scripts/reference_docs.py           # write the page
    .venv/bin/python scripts/reference_docs.py --check   # exit 1 if it is out of date

"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_cryolearn.stage_reference import PAGE, render_stage_reference

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the page is out of date")
    parser.add_argument("--output", type=Path, default=ROOT / PAGE, help=f"where to write (default: {PAGE})")
    args = parser.parse_args(argv)
    text = render_stage_reference()
    current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
    if args.check:
        if current != text:
            print(f"{args.output} is out of date: run python scripts/reference_docs.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    if current == text:
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
