"""The ingress's OpenAPI document, without a server: what it promises about the body,
authentication and methods."""

from __future__ import annotations

import json

from schemas import EVENT_MODELS
from streams.ingress.openapi import ALLOWED_METHODS, openapi_document
from streams.settings import Settings


def test_the_body_lists_the_webhooks_but_accepts_any_object() -> None:
    doc = openapi_document(Settings())
    post = doc["paths"]["/webhooks/edume"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["anyOf"] == [{"$ref": "#/components/schemas/EdumeWebhook"}, {"type": "object"}]
    assert "DLQ" in post["requestBody"]["description"]
    assert "DLQ" in post["responses"]["202"]["description"]
    components = doc["components"]["schemas"]
    assert {model.__name__ for model in EVENT_MODELS} <= components.keys()
    assert {"EdumeWebhook", "Accepted", "Error", "Status"} <= components.keys()
    text = json.dumps(doc)
    assert "#/$defs/" not in text and '"$defs"' not in text
    refs = [part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]]
    assert set(refs) <= components.keys()


def test_both_authentication_modes_are_security_schemes() -> None:
    doc = openapi_document(Settings())
    schemes = doc["components"]["securitySchemes"]
    assert schemes["signature"] == {**schemes["signature"], "type": "apiKey", "in": "header",
                                     "name": "X-Edume-Signature"}
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    post = doc["paths"]["/webhooks/edume"]["post"]
    assert post["security"] == [{"signature": []}, {"bearer": []}]
    assert "parameters" not in post


def test_every_path_says_which_methods_it_allows() -> None:
    doc = openapi_document(Settings())
    assert set(doc["paths"]) == set(ALLOWED_METHODS)
    for path, item in doc["paths"].items():
        assert f"405 with `Allow: {ALLOWED_METHODS[path]}`" in item["description"]
        declared = {method.upper() for method in item if method != "description"}
        assert declared <= set(ALLOWED_METHODS[path].split(", "))
