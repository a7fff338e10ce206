"""weave: a container overlay network manager (a re-implementation of Weave Net in Python)."""

__version__ = "0.1.0"
