"""OpenAI's Responses API (POST /v1/responses), stateless, as a translation of the backend's OpenAI chat
completions: request.py reads the request, answer.py shapes the response and its stream."""
