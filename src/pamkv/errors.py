"""The one exception a user's mistake raises.

Everything that a user can get wrong (a file, a field, a preset name, a value) raises
:class:`UserError` with a single line saying where and what; the CLI prints that line on stderr
and exits with code 2. Bugs stay ordinary exceptions.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: one line, naming the file, field or line where known."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
