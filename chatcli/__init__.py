"""chatcli: a terminal chat assistant whose conversations live in Redis."""

__version__ = "0.1.0"
