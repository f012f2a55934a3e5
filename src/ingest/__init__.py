"""Harvest OCDS releases from publishers' APIs into PostgreSQL."""

__version__ = "0.1.0"
