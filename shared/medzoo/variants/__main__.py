"""``python -m medzoo.variants [--output_dir DIR] [--check True]``: write the generated bundles (default: the zoo's
``bundles/``), or with ``--check True`` list the generated files that are stale and exit with status 1 if any is."""

from __future__ import annotations

import argparse
import sys

from ..paths import BUNDLES_DIR
from . import stale_files, write_variants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medzoo.variants", description=__doc__)
    parser.add_argument("--output_dir", default=str(BUNDLES_DIR), help="folder to write the bundles into")
    parser.add_argument(
        "--check",
        default="False",
        choices=("True", "False"),
        help="True: write nothing, list the stale files of bundles/",
    )
    args = parser.parse_args(argv)
    if args.check == "True":
        stale = stale_files()
        for path in stale:
            print(f"stale: {path} (run python -m medzoo.variants)")
        return 1 if stale else 0
    for path in write_variants(args.output_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
