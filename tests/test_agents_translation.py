"""Anthropic's Messages, OpenAI's Responses and Ollama's chat tools, translated by the proxy, against a backend
that replays recorded OpenAI chat streams (text, reasoning, tool calls in pieces): what each dialect's client
receives, and what the backend was asked. The real backend and the SDKs are in tests/test_agents_sdk.py."""
from __future__ import annotations

import json
from typing import Iterator

import anthropic
import openai
import pytest
from flask import Flask, Response, request

from proxy.ollama.tools import chat_fields, message_extras, openai_messages
from tests.helpers import serving
from tests.pull_fixtures import hub, make_app, models_dir  # noqa: F401

MODEL = "tiny.Q4_K_M"
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": choices,
            **({"usage": usage} if usage else {})}


def recorded(texts=(), reasoning=(), call_pieces=(), finish="stop") -> list[dict]:
    """An OpenAI chat stream as llama-server sends one: reasoning, then text, then a call's arguments in pieces."""
    out = [chunk({"role": "assistant", "content": None})]
    out += [chunk({"reasoning_content": text}) for text in reasoning]
    out += [chunk({"content": text}) for text in texts]
    if call_pieces:
        out.append(chunk({"tool_calls": [{"index": 0, "id": "call_abc", "type": "function",
                                          "function": {"name": "get_weather", "arguments": ""}}]}))
        out += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}) for piece in call_pieces]
    out.append(chunk({}, finish))
    out.append(chunk(usage={"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}))
    return out


@pytest.fixture(scope="module")
def backend() -> Iterator[dict]:
    """A backend answering every chat with `state["stream"]`, keeping the bodies it was sent."""
    state: dict = {"stream": recorded(["Hi"]), "bodies": []}
    app = Flask("recorded-backend")

    @app.post("/v1/chat/completions")
    def chat():
        state["bodies"].append(request.get_json())
        events = "".join(f"data: {json.dumps(c)}\n\n" for c in state["stream"]) + "data: [DONE]\n\n"
        return Response(events, mimetype="text/event-stream")

    with serving(app) as url:
        yield {**state, "url": url, "state": state}


@pytest.fixture
def client(make_app, backend):  # noqa: F811
    backend["state"]["bodies"].clear()
    return make_app(backend_url=backend["url"]).test_client()


def answering(backend: dict, **stream) -> list[dict]:
    """Make the backend answer the next chats with `recorded(**stream)`; the bodies it receives."""
    backend["state"]["stream"] = recorded(**stream)
    return backend["state"]["bodies"]


def sse_events(data: bytes) -> list[dict]:
    events = [block for block in data.decode().split("\n\n") if block.strip()]
    parsed = []
    for block in events:
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        event = json.loads(lines["data"])
        assert lines["event"] == event["type"], "the SSE event name is the data's type"
        parsed.append(event)
    return parsed


def test_messages_text_answer_and_the_chat_the_backend_was_sent(client, backend):
    sent = answering(backend, texts=["Hel", "lo"])
    answer = client.post("/v1/messages", json={
        "model": MODEL, "max_tokens": 20, "system": [{"type": "text", "text": "Be brief."}], "temperature": 0.5,
        "top_k": 3, "messages": [{"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": [{"type": "text", "text": "Yes?"}]},
                                 {"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]})
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert body["id"].startswith("msg_") and body["type"] == "message" and body["role"] == "assistant"
    assert body["content"] == [{"type": "text", "text": "Hello"}] and body["model"] == MODEL
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)
    assert body["usage"] == {"input_tokens": 11, "output_tokens": 7}
    asked = sent[-1]
    assert asked["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "Yes?"}, {"role": "user", "content": "Say hello"}]
    assert (asked["max_tokens"], asked["temperature"], asked["top_k"], asked["stream"]) == (20, 0.5, 3, True)


def test_messages_stream_has_anthropics_event_sequence_with_thinking_and_a_tool_call(client, backend):
    answering(backend, reasoning=["Let me", " think"], texts=["Checking."], call_pieces=['{"city":', ' "Oslo"}'],
              finish="tool_calls")
    answer = client.post("/v1/messages", json={"model": MODEL, "max_tokens": 50, "stream": True, "tools": [WEATHER],
                                               "messages": [{"role": "user", "content": "Weather in Oslo?"}]})
    assert answer.status_code == 200 and answer.mimetype == "text/event-stream"
    events = sse_events(answer.data)
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [s["type"] for s in starts] == ["thinking", "text", "tool_use"]
    assert starts[2]["id"].startswith("toolu_") and starts[2]["name"] == "get_weather" and starts[2]["input"] == {}
    json_parts = [e["delta"]["partial_json"] for e in events if e.get("delta", {}).get("type") == "input_json_delta"]
    assert json.loads("".join(json_parts)) == {"city": "Oslo"}
    thinking = [e["delta"]["thinking"] for e in events if e.get("delta", {}).get("type") == "thinking_delta"]
    assert "".join(thinking) == "Let me think"
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2]["usage"]["output_tokens"] == 7


def test_messages_stop_sequence_cuts_the_text_and_is_named(client, backend):
    answering(backend, texts=["Hel", "lo wo", "rld and more"])
    body = client.post("/v1/messages", json={"model": MODEL, "max_tokens": 20, "stop_sequences": ["xyz", "o wor"],
                                             "messages": [{"role": "user", "content": "Hi"}]}).json
    assert body["content"] == [{"type": "text", "text": "Hell"}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "o wor")
    assert "stop" not in backend["state"]["bodies"][-1], "stop sequences are found by the proxy, which names them"


def test_messages_tools_results_and_choices_become_openai_chat(client, backend):
    sent = answering(backend, texts=["It is sunny."])
    history = [{"role": "user", "content": "Weather in Oslo?"},
               {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                  "input": {"city": "Oslo"}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}]}]
    for choice, expected in (({"type": "any"}, "required"), ({"type": "none"}, "none"),
                             ({"type": "tool", "name": "get_weather"},
                              {"type": "function", "function": {"name": "get_weather"}})):
        answer = client.post("/v1/messages", json={"model": MODEL, "max_tokens": 9, "tools": [WEATHER],
                                                   "tool_choice": choice, "messages": history})
        assert answer.status_code == 200, answer.json
        assert sent[-1]["tool_choice"] == expected
    asked = sent[-1]
    assert asked["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER["input_schema"], "description": WEATHER["description"]}}]
    assert asked["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}
    assert asked["messages"][2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"}


@pytest.mark.parametrize("body, words", [
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]}, "image"),
    ({"messages": [{"role": "user", "content": "Hi"}]}, "max_tokens"),
    ({"max_tokens": 5, "messages": []}, "messages"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}], "tools": [WEATHER],
      "tool_choice": {"type": "tool", "name": "other"}}, "other"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search"),
])
def test_messages_bad_requests_answer_in_anthropics_error_shape(client, body, words):
    answer = client.post("/v1/messages", json={"model": MODEL, **body})
    assert answer.status_code == 400
    assert answer.json["type"] == "error" and answer.json["error"]["type"] == "invalid_request_error"
    assert words in answer.json["error"]["message"]


def test_responses_text_answer_with_usage_and_instructions(client, backend):
    sent = answering(backend, texts=["Hel", "lo"], finish="length")
    answer = client.post("/v1/responses", json={"model": MODEL, "instructions": "Be brief.", "input": "Hi",
                                                "max_output_tokens": 7})
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert body["id"].startswith("resp_") and body["object"] == "response" and body["model"] == MODEL
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    [message] = body["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0]["type"] == "output_text" and message["content"][0]["text"] == "Hello"
    assert body["usage"]["input_tokens"] == 11 and body["usage"]["output_tokens"] == 7
    assert body["usage"]["total_tokens"] == 18
    assert sent[-1]["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert sent[-1]["max_tokens"] == 7


def test_responses_stream_numbers_its_events_and_streams_a_function_call(client, backend):
    answering(backend, texts=["Let me check."], call_pieces=['{"city":', ' "Oslo"}'], finish="tool_calls")
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["input_schema"]}
    answer = client.post("/v1/responses", json={"model": MODEL, "input": "Weather?", "tools": [tool],
                                                "tool_choice": "required", "stream": True})
    events = sse_events(answer.data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.index("response.output_text.delta") < kinds.index("response.function_call_arguments.delta")
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert json.loads(deltas) == {"city": "Oslo"}
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    call = final["output"][1]
    assert (call["name"], call["call_id"], json.loads(call["arguments"])) == ("get_weather", "call_abc",
                                                                              {"city": "Oslo"})
    assert backend["state"]["bodies"][-1]["tool_choice"] == "required"


def test_responses_input_items_become_a_tool_round_trip(client, backend):
    sent = answering(backend, texts=["Sunny."])
    items = [{"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
             {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
             {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"}]
    assert client.post("/v1/responses", json={"model": MODEL, "input": items}).status_code == 200
    assert sent[-1]["messages"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}]


@pytest.mark.parametrize("extra, param", [({"store": True}, "store"), ({"previous_response_id": "resp_1"},
                                                                       "previous_response_id"),
                                          ({"tools": [{"type": "web_search"}]}, "tools"),
                                          ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
                                           "input")])
def test_responses_refusals_name_the_field(client, extra, param):
    answer = client.post("/v1/responses", json={"model": MODEL, "input": "Hi", **extra})
    assert answer.status_code == 400
    error = answer.json["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_request", param)


def test_ollama_tools_need_a_template_that_takes_them_and_think_maps_to_reasoning():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(Exception, match="'m' does not support tools"):
        chat_fields({"model": "m", "tools": tools}, lambda: None)
    fields = chat_fields({"model": "m", "tools": tools, "think": "low"}, lambda: "{{ tools }} <think>")
    assert fields == {"tools": tools, "reasoning_effort": "low"}
    assert chat_fields({"model": "m", "think": False}, lambda: None)["chat_template_kwargs"] == {
        "enable_thinking": False}
    with pytest.raises(Exception, match="does not support thinking"):
        chat_fields({"model": "m", "think": True}, lambda: "{{ messages }}")


def test_ollama_tool_calls_round_trip_with_arguments_as_objects():
    history = openai_messages([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"city": "O"}}}]},
        {"role": "tool", "content": "Sunny", "tool_name": "f"}])
    assert history[1]["tool_calls"] == [{"id": "call_0", "type": "function",
                                         "function": {"name": "f", "arguments": '{"city": "O"}'}}]
    assert history[2] == {"role": "tool", "content": "Sunny", "tool_call_id": "call_0"}
    extras = message_extras({"content": "", "reasoning_content": "hmm", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"city": "O"}'}}]})
    assert extras["thinking"] == "hmm"
    assert extras["tool_calls"][0]["function"]["arguments"] == {"city": "O"}


def test_messages_paths_answer_every_error_in_anthropics_shape(client):
    wrong_method = client.get("/v1/messages")
    assert wrong_method.status_code == 405 and wrong_method.json["error"]["type"] == "invalid_request_error"
    unknown = client.post("/v1/messages/batches", json={})
    assert unknown.status_code == 404 and unknown.json == {
        "type": "error", "error": {"type": "not_found_error", "message": unknown.json["error"]["message"]}}


def test_x_api_key_is_accepted_where_the_proxy_key_guards(make_app, backend):  # noqa: F811
    guarded = make_app(backend_url=backend["url"], api_key="the-key").test_client()
    body = {"filename": "absent.Q4_K_M.gguf"}
    assert guarded.delete("/v1/api/delete", json=body).status_code == 401
    assert guarded.delete("/v1/api/delete", json=body, headers={"x-api-key": "wrong"}).status_code == 401
    assert guarded.delete("/v1/api/delete", json=body, headers={"x-api-key": "the-key"}).status_code == 404


@pytest.mark.parametrize("pieces, stop_reason", [(['{"city":', ' "Oslo"}'], "tool_use"), (['{"city":'], "max_tokens")])
def test_a_token_limit_after_a_whole_call_still_answers_tool_use(client, backend, pieces, stop_reason):
    answering(backend, call_pieces=pieces, finish="length")
    body = client.post("/v1/messages", json={"model": MODEL, "max_tokens": 9, "tools": [WEATHER],
                                             "messages": [{"role": "user", "content": "Weather?"}]}).json
    assert body["stop_reason"] == stop_reason and body["content"][0]["type"] == "tool_use"
    response = client.post("/v1/responses", json={"model": MODEL, "input": "Weather?", "tools": [
        {"type": "function", "name": "get_weather", "parameters": WEATHER["input_schema"]}]}).json
    assert response["status"] == ("completed" if stop_reason == "tool_use" else "incomplete")


def test_messages_output_config_asks_for_a_json_schema(client, backend):
    sent = answering(backend, texts=['{"a": 1}'])
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    client.post("/v1/messages", json={"model": MODEL, "max_tokens": 9, "messages": [{"role": "user", "content": "a"}],
                                      "output_config": {"format": {"type": "json_schema", "schema": schema},
                                                        "effort": "max"}})
    assert sent[-1]["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert sent[-1]["reasoning_effort"] == "high"


def test_the_sdks_stream_helpers_add_the_events_up(make_app, backend):  # noqa: F811
    """The SDKs' own accumulators (anthropic's messages.stream, openai's responses.stream) read every event."""
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["input_schema"]}
    answering(backend, reasoning=["Hmm"], texts=["Checking."], call_pieces=['{"city":', ' "Oslo"}'],
              finish="tool_calls")
    with serving(make_app(backend_url=backend["url"])) as url:
        claude = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)
        with claude.messages.stream(model=MODEL, max_tokens=30, tools=[WEATHER], messages=[
                {"role": "user", "content": "Weather?"}]) as stream:
            message = stream.get_final_message()
        oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        with oai.responses.stream(model=MODEL, input="Weather?", tools=[tool]) as stream:
            response = stream.get_final_response()
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[2].input == {"city": "Oslo"} and message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7), "message_delta's usage counts"
    assert response.output_text == "Checking." and response.output[-1].arguments == '{"city": "Oslo"}'


def test_metrics_count_each_dialects_requests_by_route(client, backend):
    answering(backend, texts=["Hi"])
    client.post("/v1/messages", json={"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "a"}]})
    client.post("/v1/responses", json={"model": MODEL, "input": "a"})
    scraped = client.get("/metrics").get_data(as_text=True)
    for route in ("/v1/messages", "/v1/responses"):
        assert f'proxy_http_requests_total{{method="POST",route="{route}",status="200"}}' in scraped


def test_a_backend_failing_mid_stream_ends_each_stream_with_an_error_event(client, backend):
    backend["state"]["stream"] = recorded(texts=["Hel"])[:2] + [
        {"error": {"message": "the model was unloaded", "code": "backend_unavailable"}}]
    anthropic_events = sse_events(client.post("/v1/messages", json={
        "model": MODEL, "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "a"}]}).data)
    assert anthropic_events[-1] == {"type": "error", "error": {"type": "api_error",
                                                               "message": "the model was unloaded"}}
    responses_events = sse_events(client.post("/v1/responses", json={"model": MODEL, "input": "a",
                                                                      "stream": True}).data)
    assert responses_events[-1]["type"] == "error" and responses_events[-1]["code"] == "backend_unavailable"
    assert responses_events[-1]["sequence_number"] == len(responses_events) - 1
