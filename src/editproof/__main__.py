"""``python -m editproof`` is the same as the ``editproof`` console script."""

from editproof.cli._entry import console

if __name__ == "__main__":
    console()
