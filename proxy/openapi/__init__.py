"""The proxy's OpenAPI document (GET /openapi.json), Ollama's routes included."""
