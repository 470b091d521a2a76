"""Write the bad-input corpus (tests/bad_corpus.py) into a new folder.

    .venv/bin/python scripts/make_bad_corpus.py /tmp/bad      # one folder per entry
    .venv/bin/python scripts/make_bad_corpus.py --list         # names and descriptions

Each entry folder holds its inputs and an ``expect.yaml`` (command, exit status, message);
``tests/test_bad_inputs.py`` generates the same corpus into a temporary folder and runs it.
See tests/data/bad/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import bad_corpus  # noqa: E402 - tests/ is put on the path first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, help="a new (or empty) folder")
    parser.add_argument("--list", action="store_true", help="list the entries and exit")
    args = parser.parse_args()
    if args.list or args.out is None:
        for item in bad_corpus.ENTRIES:
            print(f"{item.name:<40} {item.group:<9} {item.description}")
        return
    names = bad_corpus.write_corpus(args.out)
    print(f"{len(names)} entries written to {args.out}")


if __name__ == "__main__":
    main()
