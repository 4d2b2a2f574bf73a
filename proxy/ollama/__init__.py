"""Ollama's API in Ollama's shapes, for the routes in proxy/routes/ollama*.py: its model names (names), the
installed models as Ollama lists and shows them (listing), requests translated to the backend's (convert), its
answers and streams (stream), and a pull's progress lines (pull)."""
