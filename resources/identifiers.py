"""Validation of identifiers that reach SQL from configuration (CSV, YAML, env vars).

Table, schema and column names cannot be bound as query parameters, so every name that is
interpolated into SQL passes through here first.
"""

import re

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class InvalidIdentifierError(ValueError):
    """A name from configuration that is not safe to put into SQL."""


def validate_identifier(name: str, *, what: str = "identifier") -> str:
    """Return `name` unchanged if it matches ``^[A-Za-z_][A-Za-z0-9_]*$``, else raise."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InvalidIdentifierError(
            f"invalid {what} {name!r}: must match ^[A-Za-z_][A-Za-z0-9_]*$"
        )
    return name
