"""The front door: `python -m dyldwatch`, the `dyldwatch` console script and the artifact's entry.

- `--socket ...` (how osqueryd starts an autoloaded extension) and `extension ...` (the launcher):
  straight to the Thrift runtime, without click or the pack tooling (cold start stays short);
- `--list-tables`: the artifact's smoke test (deploy.smoke), which runs even where native wheels
  cannot load;
- anything else: the click CLI.

The only module that imports both `cli` and `extension`; nothing imports it. Top level: stdlib only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, prog_name: str = "dyldwatch") -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--list-tables"]:
        from .deploy.smoke import list_tables

        sys.exit(list_tables())
    if args[:1] == ["extension"] and not {"--help", "-h"} & set(args):  # help comes from click
        from .extension.runtime import extension_main

        sys.exit(extension_main(args[1:]))
    if args and args[0].startswith("--socket"):
        from .extension.runtime import extension_main

        sys.exit(extension_main(args))
    from .cli import main as cli

    cli(args, prog_name=prog_name)


def artifact_main(argv: Sequence[str] | None = None) -> None:
    """`dyldwatch.ext` (pex entry `dyldwatch.__main__:artifact_main`): the same doors, named for the artifact."""
    main(argv, prog_name="dyldwatch.ext")


if __name__ == "__main__":
    main()
