"""The one version of gitpod-sim: the package metadata (pyproject reads it), ``--version`` and
the start-up line all use this, and reading it costs no ``importlib.metadata`` at start-up."""

__version__ = "0.2.0"
