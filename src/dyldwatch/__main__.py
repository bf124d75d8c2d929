"""`python -m dyldwatch`: the CLI, except that `extension` (what the launcher runs) skips click."""

import sys


def main() -> None:
    if sys.argv[1:2] == ["extension"]:
        from .extension import extension_main

        sys.exit(extension_main(sys.argv[2:]))
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
