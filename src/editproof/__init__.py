"""editproof: prove that a weight edit kept a language model healthy.

The public API is small; everything else lives in subpackages named for what they hold.
Importing ``editproof`` never imports torch: verification works on a machine without it.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
