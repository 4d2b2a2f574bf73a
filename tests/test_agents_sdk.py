"""The agents' dialects end to end with their official clients: `anthropic` (Messages), `openai` (Responses) and
`ollama` (chat with tools) against the proxy under gunicorn, the real backend and the real Gemma 3 270M, beside a
copy of Gemma whose GGUF carries a chat template with tools (Hermes' `<tool_call>`, as Qwen's). Gemma is a base
model: the tests force the calls they need (the backend's grammar makes them parse) and assert on shapes, counts
and validation, never on the words."""
from __future__ import annotations

import json
import sys

import anthropic
import jsonschema
import ollama
import openai
import pytest

from tests.gemma_models import GEMMA, WEATHER_SCHEMA, gemma_folder, with_template
from tests.helpers import REPO_ROOT, stack_dirs

sys.path.insert(0, str(REPO_ROOT / "scripts"))

from stack import backend, proxy  # noqa: E402

TOOLED = "gemma-tools-Q4_K_M"
KEY = "agents-e2e-key"
HI = [{"role": "user", "content": "Say hi"}]
# Greedy, so a forced call is written tersely (sampled, the grammar's optional whitespace can fill the limit).
GREEDY = {"temperature": 0}
# A Hermes-style template, as Qwen 2.5's: the tools in the system turn, calls in <tool_call> tags; BOS written
# first, as Gemma's own template writes it.
TOOLS_TEMPLATE = """{{ bos_token }}{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools

<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

For each function call, return a json object within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}{% for message in messages %}{% if message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% elif message.role != 'system' %}<|im_start|>{{ message.role }}
{{ message.content or '' }}{% for call in message.tool_calls or [] %}
<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


@pytest.fixture(scope="module")
def url(tmp_path_factory, gemma_gguf):
    folder = tmp_path_factory.mktemp("agents")
    models, logs = stack_dirs(folder)
    gemma_folder(gemma_gguf, models, GEMMA)
    with_template(gemma_gguf, models / f"{TOOLED}.gguf", TOOLS_TEMPLATE)
    with backend(models, logs) as backend_url, \
            proxy(models, logs, "http://127.0.0.1:9", backend_url, env={"PROXY_API_KEY": KEY}) as (proxy_url, _):
        yield proxy_url


@pytest.fixture(scope="module")
def claude(url):
    return anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def oai(url):
    return openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def test_messages_create_answers_text_with_usage(claude):
    message = claude.messages.create(model=GEMMA, max_tokens=8, system="You are brief.", messages=HI)
    assert message.id.startswith("msg_") and message.role == "assistant" and message.model == GEMMA
    assert [block.type for block in message.content] == ["text"] and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 8


def test_messages_stream_adds_up_to_its_final_message(claude):
    with claude.messages.stream(model=GEMMA, max_tokens=8, messages=HI) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_delta" in events and "message_delta" in events
    assert final.content[0].type == "text" and final.content[0].text
    assert final.stop_reason in ("end_turn", "max_tokens") and 0 < final.usage.output_tokens <= 8


def test_count_tokens_counts_what_the_message_uses_tools_included(claude):
    counted = claude.messages.count_tokens(model=GEMMA, system="You are brief.", messages=HI)
    used = claude.messages.create(model=GEMMA, max_tokens=1, system="You are brief.", messages=HI)
    assert counted.input_tokens == used.usage.input_tokens > 0
    tool = {"name": "get_weather", "description": "The weather in a city", "input_schema": WEATHER_SCHEMA}
    with_tools = claude.messages.count_tokens(model=TOOLED, messages=HI, tools=[tool])
    used = claude.messages.create(model=TOOLED, max_tokens=1, messages=HI, tools=[tool])
    assert with_tools.input_tokens == used.usage.input_tokens
    assert with_tools.input_tokens > claude.messages.count_tokens(model=TOOLED, messages=HI).input_tokens


def test_messages_forced_tool_use_input_validates(claude):
    tool = {"name": "get_weather", "description": "The weather in a city", "input_schema": WEATHER_SCHEMA}
    message = claude.messages.create(model=GEMMA, max_tokens=48, tools=[tool], messages=[
        {"role": "user", "content": "Weather in Oslo?"}], tool_choice={"type": "tool", "name": "get_weather"},
        extra_body=GREEDY)
    uses = [block for block in message.content if block.type == "tool_use"]
    assert message.stop_reason == "tool_use" and len(uses) >= 1
    assert uses[0].id.startswith("toolu_") and uses[0].name == "get_weather"
    jsonschema.validate(uses[0].input, WEATHER_SCHEMA)
    answered = claude.messages.create(model=GEMMA, max_tokens=1, tools=[tool], messages=[
        {"role": "user", "content": "Weather in Oslo?"}, {"role": "assistant", "content": message.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "Sunny"}]}])
    assert answered.usage.input_tokens > message.usage.input_tokens, "the call and its result reach the prompt"


def test_messages_errors_come_in_anthropics_shape(claude):
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="acme/absent-GGUF:Q4_K_M", max_tokens=4, messages=HI)
    assert "pull it first" in str(missing.value)
    with pytest.raises(anthropic.BadRequestError) as image:
        claude.messages.create(model=GEMMA, max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}])
    assert image.value.body["error"]["type"] == "invalid_request_error" and "image" in str(image.value)


def test_responses_create_plain_and_streamed(oai):
    response = oai.responses.create(model=GEMMA, instructions="You are brief.", input="Say hi",
                                    max_output_tokens=8)
    assert response.id.startswith("resp_") and response.output_text
    assert response.status in ("completed", "incomplete") and 0 < response.usage.output_tokens <= 8
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    events = list(oai.responses.create(model=GEMMA, input=HI, max_output_tokens=8, stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text and events[-1].response.output_text == text


def test_responses_forced_function_call_arguments_validate(oai):
    tool = {"type": "function", "name": "get_weather", "description": "The weather in a city",
            "parameters": WEATHER_SCHEMA}
    events = list(oai.responses.create(model=GEMMA, input="Weather in Oslo?", tools=[tool], max_output_tokens=48,
                                       tool_choice={"type": "function", "name": "get_weather"}, stream=True,
                                       temperature=0))
    calls = [item for item in events[-1].response.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and calls[0].call_id
    streamed = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert streamed == calls[0].arguments
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER_SCHEMA)


def test_responses_refuse_stored_state_naming_the_field(oai):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model=GEMMA, input="Hi", previous_response_id="resp_123")
    assert caught.value.param == "previous_response_id"


def test_ollama_chat_takes_tools_where_the_template_does(url):
    client = ollama.Client(host=url, timeout=120)
    tool = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                             "parameters": WEATHER_SCHEMA}}
    asked, options = [{"role": "user", "content": "Weather in Oslo?"}], {"num_predict": 1, "temperature": 0}
    plain = client.chat(model=TOOLED, messages=asked, options=options)
    with_tools = client.chat(model=TOOLED, messages=asked, tools=[tool], options=options)
    assert with_tools.done and with_tools.prompt_eval_count > plain.prompt_eval_count, "the tools reach the prompt"
    history = asked + [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "Sunny", "tool_name": "get_weather"}]
    answered = client.chat(model=TOOLED, messages=history, tools=[tool], options=options)
    assert answered.prompt_eval_count > with_tools.prompt_eval_count, "the call and its result reach the prompt"
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model=GEMMA, messages=HI, tools=[tool])
    assert refused.value.status_code == 400 and "does not support tools" in str(refused.value)
