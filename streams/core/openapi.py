"""What the ingress's and the worker's OpenAPI documents share: component references, JSON
answers (with ``Retry-After`` where the client should come back), and read-only pages."""

from __future__ import annotations

from typing import Any, Final

COMPONENTS: Final = "#/components/schemas/"
READ_ONLY: Final = "GET, HEAD"
"""The ``Allow`` header of a read-only page: any other method is answered 405."""
RETRY_AFTER: Final = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}
}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def json_answer(description: str, component: str, *, retry: bool = False) -> dict[str, Any]:
    """A JSON answer of ``component``; ``retry``: with a ``Retry-After`` header."""
    answer: dict[str, Any] = {
        "description": description,
        "content": json_content({"$ref": COMPONENTS + component}),
    }
    if retry:
        answer["headers"] = RETRY_AFTER
    return answer


def read_only_page(summary: str, responses: dict[str, Any], **operation: Any
                   ) -> dict[str, Any]:
    """A path answering GET (and HEAD) only."""
    return {
        "description": f"Other methods: 405 with `Allow: {READ_ONLY}`.",
        "get": {"summary": summary, **operation, "responses": responses},
    }
