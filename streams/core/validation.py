"""Why a document failed its schema, in words safe to put in a DLQ header or a log."""

from __future__ import annotations

from pydantic import ValidationError

MAX_REASON = 300
"""Characters at most: a reason travels in a record header."""


def summarise_validation(exc: ValidationError, document: object) -> str:
    """Where and why a document failed its schema, without echoing any input value."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:5]:
        parts.append(f"{_document_path(error['loc'], document)}: {error['msg']}")
    more = exc.error_count() - len(parts)
    text = "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
    return text[:MAX_REASON]


def _document_path(loc: tuple[int | str, ...], document: object) -> str:
    """The error's location as a path in the document: union tags pydantic puts in ``loc``
    (``course.added``, ``lesson``) are not keys of the document and are left out."""
    path: list[str] = []
    node = document
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif i != len(loc) - 1:
            continue  # a union tag
        path.append(str(part))
    return ".".join(path) or "(root)"
