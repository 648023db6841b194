"""`pamkv` commands (filled in by its owning module)."""

from pamkv.cli.app import app  # noqa: F401
