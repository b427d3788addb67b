"""OpenAPI post-processing: document the error answers every endpoint can give (DRF's JSON error bodies)."""

ERROR_SCHEMA = {
    "type": "object",
    "description": '`{"detail": "…"}`, or for invalid input `{"<field>": ["<what is wrong>", …]}`',
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}

DESCRIPTIONS = {
    "400": "Invalid input: the body names each bad field or query parameter and why",
    "401": "No or invalid credentials (send `Authorization: Token <key>` or a session cookie)",
    "403": "Authenticated, but without the needed permission (or a session write without its CSRF token)",
    "404": "No such object, or a page beyond the last",
    "415": "A body whose Content-Type the endpoint does not read, or cannot be parsed as that type",
}


def _error(code: str) -> dict:
    return {
        "description": DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def document_errors(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            codes = set()
            if path != "/api/token/":
                codes |= {"401", "403"}
            if operation.get("parameters") or method in ("post", "put", "patch"):
                codes.add("400")
            if method in ("post", "put", "patch"):
                codes.add("415")
            if "{" in path or any(p.get("name") == "page" for p in operation.get("parameters", [])):
                codes.add("404")
            for code in sorted(codes):
                existing = responses.get(code)
                if existing is None or "content" not in existing:
                    responses[code] = _error(code)
    return result
