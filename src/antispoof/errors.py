"""User-facing errors. Stages catch these in main() and exit with one clear line."""
from __future__ import annotations


class UserError(Exception):
    """Bad input that the user must fix (exit status 2). The message names the file and field."""

    exit_code = 2


class ParamError(UserError):
    """An invalid value in params.yaml. `key` is the dotted key at fault."""

    def __init__(self, key: str, message: str, file: str = "params.yaml"):
        self.key, self.file, self.message = key, file, message
        super().__init__(f"{file}: {key}: {message}")

    def in_file(self, file: str) -> "ParamError":
        """The same error, attributed to another params file."""
        return ParamError(self.key, self.message, file)


class DataError(UserError):
    """Bad input data (missing audio, malformed protocol line, ...)."""
