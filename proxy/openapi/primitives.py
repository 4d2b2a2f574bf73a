"""The schema pieces every part of the OpenAPI document is written with: media types, JSON types, the key guard."""
from __future__ import annotations

JSON = "application/json"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
OBJ = {"type": "object"}
STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NUMBER = {"type": "number"}
NULLABLE_STR = {"type": ["string", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}
# The bearer key is needed only when PROXY_API_KEY is set, hence the empty alternative.
GUARDED = {"security": [{"bearer": []}, {}]}


def ref(name: str) -> dict:
    """A reference to the document's schema `name`."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict, description: str = "JSON") -> dict:
    """A response of JSON that `schema` describes."""
    return {"description": description or "JSON", "content": {JSON: {"schema": schema}}}
