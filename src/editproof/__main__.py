"""``python -m editproof`` is the same as the ``editproof`` console script."""

from editproof.cli.app import main

if __name__ == "__main__":
    main()
