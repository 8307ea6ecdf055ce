"""The project's errors, apart from every stage so that any stage can raise them.

`InputError` is a problem with what the user gave (a file, a flag, a model name): the CLI prints its
message on one line, naming the file and line where there is one, and exits with status 2.
"""

from __future__ import annotations


class InputError(Exception):
    """A problem with the user's input that deserves a one-line message, not a traceback."""
