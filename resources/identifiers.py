"""Validation of identifiers that reach SQL from configuration (CSV, YAML, env vars).

Table, schema and column names cannot be bound as query parameters, so every name that is
interpolated into SQL passes through here first.
"""

import re

# Also applied by Arrow (RE2) to whole columns of names: keep it within the syntax both share.
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)


class InvalidIdentifierError(ValueError):
    """A name from configuration that is not safe to put into SQL."""


def validate_identifier(name: str, *, what: str = "identifier") -> str:
    """Return `name` unchanged if it matches ``^[A-Za-z_][A-Za-z0-9_]*$``, else raise."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InvalidIdentifierError(
            f"invalid {what} {name!r}: must match ^[A-Za-z_][A-Za-z0-9_]*$"
        )
    return name
