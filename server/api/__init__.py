"""The backend's HTTP face: routes, request parsing, answers in the Shimmy and OpenAI shapes, SSE."""
