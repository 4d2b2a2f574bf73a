"""Anthropic's Messages API (POST /v1/messages, /v1/messages/count_tokens) as a translation of the backend's
OpenAI chat completions: request.py reads the request, answer.py shapes the answer and its stream, stops.py finds
the stop sequences, count.py counts a request's input tokens."""
