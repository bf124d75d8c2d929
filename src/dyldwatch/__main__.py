"""`python -m dyldwatch` runs the CLI (the extension launcher uses this form)."""

from .cli import main

if __name__ == "__main__":
    main()
