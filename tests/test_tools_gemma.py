"""OpenAI chat with tools end to end: the `openai` SDK and LangChain's `bind_tools` agent loop against the proxy
under gunicorn, the real backend and the real Gemma 3 270M, which has no chat template (llama-server's generic
format: the tools described in the prompt, the answer a grammar-constrained choice of calls or text), beside a copy
of Gemma carrying Qwen 2.5's real template (Hermes `<tool_call>` calls). Gemma is a base model: the tests force
the calls they need (a grammar, or a few calls in the history it copies) and assert on shapes and validation, never
on the words."""
from __future__ import annotations

import json
import sys

import jsonschema
import openai
import pytest
import requests

from tests.gemma_models import GEMMA, WEATHER_SCHEMA, gemma_folder, with_template
from tests.helpers import REPO_ROOT, stack_dirs

sys.path.insert(0, str(REPO_ROOT / "scripts"))

from stack import backend, proxy  # noqa: E402

QWEN = "gemma-qwen25-template-Q4_K_M"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                            "parameters": WEATHER_SCHEMA}}
TIME_SCHEMA = {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
               "required": ["zone"], "additionalProperties": False}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": TIME_SCHEMA}}
ASK = [{"role": "user", "content": "What is the weather in Oslo?"}]
NESTED = {"type": "function", "function": {"name": "plan", "parameters": {"type": "object", "properties": {
    "stops": {"type": "array", "items": {"type": "object", "properties": {"at": {"type": "integer"}, "note": {
        "type": "string"}}, "required": ["at"]}}, "fast": {"type": "boolean"}, "mode": {"enum": ["a", 1]}}}}}
SHORT = {"max_tokens": 40, "temperature": 0, "parallel_tool_calls": False}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, gemma_gguf):
    folder = tmp_path_factory.mktemp("tools")
    models, logs = stack_dirs(folder)
    gemma_folder(gemma_gguf, models, GEMMA)
    template = (REPO_ROOT / "tests" / "data" / "chat_templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
    with_template(gemma_gguf, models / f"{QWEN}.gguf", template)
    with backend(models, logs, {"PARALLEL": "2", "N_CTX": "2048"}) as backend_url, \
            proxy(models, logs, "http://127.0.0.1:9", backend_url) as (url, _):
        yield {"client": openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300),
               "backend": backend_url}


@pytest.fixture(scope="module")
def oai(stack):
    return stack["client"]


@pytest.fixture(scope="module")
def forced(oai):
    """A call Gemma was made to write (tool_choice required)."""
    return oai.chat.completions.create(model=GEMMA, messages=ASK, tools=[WEATHER], tool_choice="required", **SHORT)


def _valid_call(call, name: str, schema: dict) -> dict:
    assert call.type == "function" and call.id and call.function.name == name
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, schema)
    return arguments


def test_required_tool_choice_returns_one_valid_call(forced):
    choice = forced.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    _valid_call(call, "get_weather", WEATHER_SCHEMA)


def test_a_named_function_is_the_one_called(oai):
    answer = oai.chat.completions.create(model=GEMMA, messages=ASK, tools=[WEATHER, CLOCK], **SHORT,
                                         tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert answer.choices[0].finish_reason == "tool_calls"
    _valid_call(answer.choices[0].message.tool_calls[0], "get_time", TIME_SCHEMA)


def test_streamed_call_deltas_reassemble_to_one_valid_call(oai):
    chunks = list(oai.chat.completions.create(model=GEMMA, messages=ASK, tools=[WEATHER], tool_choice="required",
                                              stream=True, **SHORT))
    deltas = [call for chunk in chunks if chunk.choices for call in chunk.choices[0].delta.tool_calls or []]
    first, rest = deltas[0], deltas[1:]
    assert first.index == 0 and first.id and first.type == "function" and first.function.name == "get_weather"
    assert len(rest) > 1 and all(d.index == 0 and d.id is None and d.function.name is None for d in rest)
    arguments = first.function.arguments + "".join(d.function.arguments for d in rest)  # in pieces
    jsonschema.validate(json.loads(arguments), WEATHER_SCHEMA)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_tool_result_goes_back_and_the_model_answers(oai, forced):
    call = forced.choices[0].message.tool_calls[0]
    history = ASK + [forced.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}]
    answer = oai.chat.completions.create(model=GEMMA, messages=history, tools=[WEATHER], max_tokens=8,
                                         temperature=0)
    assert answer.usage.prompt_tokens > forced.usage.prompt_tokens + 10, "the call and its result reach the prompt"
    _well_formed(answer.choices[0])


def test_auto_answers_text_or_a_valid_call(oai):
    answer = oai.chat.completions.create(model=GEMMA, messages=ASK, tools=[WEATHER], max_tokens=12, temperature=0)
    _well_formed(answer.choices[0])


def _well_formed(choice) -> None:
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls"
        for call in choice.message.tool_calls:
            _valid_call(call, "get_weather", WEATHER_SCHEMA)
    else:
        assert isinstance(choice.message.content, str) and choice.finish_reason in ("stop", "length")
        assert not choice.message.content.lstrip().startswith('{"response"'), "the generic JSON is unwrapped"


def test_stats_count_the_calls_returned(stack, oai):
    before = requests.get(stack["backend"] + "/stats", timeout=30).json()
    oai.chat.completions.create(model=GEMMA, messages=ASK, tools=[WEATHER], tool_choice="required", **SHORT)
    after = requests.get(stack["backend"] + "/stats", timeout=30).json()
    assert after["tool_calls"] == before["tool_calls"] + 1 and after["reasoning_tokens"] >= 0


def test_langchain_agent_loop_runs_a_tool_and_completes(stack):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    ran = []

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        ran.append(city)
        return f"Sunny in {city}"

    llm = ChatOpenAI(model=GEMMA, base_url=str(stack["client"].base_url), api_key="unused", temperature=0,
                     max_tokens=40, max_retries=0, timeout=300)
    messages = [HumanMessage("What is the weather in Oslo?")]
    asked = llm.bind_tools([get_weather], tool_choice="get_weather").invoke(messages)
    assert asked.tool_calls and asked.tool_calls[0]["name"] == "get_weather"
    messages += [asked] + [ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
                           for call in asked.tool_calls]
    final = llm.bind_tools([get_weather]).invoke(messages + [HumanMessage("Now answer.")], max_tokens=8)
    assert ran and isinstance(ran[0], str) and final.response_metadata["finish_reason"] in ("stop", "length",
                                                                                            "tool_calls")


def test_a_template_with_tools_gets_its_own_call_syntax_under_a_grammar(oai):
    # <tool_call> and </tool_call> are several tokens each in Gemma's vocabulary: room for the whole call however
    # much whitespace the grammar lets the model put around it.
    answer = oai.chat.completions.create(model=QWEN, messages=ASK, tools=[WEATHER], tool_choice="required",
                                         **{**SHORT, "max_tokens": 100})
    assert answer.choices[0].finish_reason == "tool_calls"
    _valid_call(answer.choices[0].message.tool_calls[0], "get_weather", WEATHER_SCHEMA)
    assert answer.usage.completion_tokens > 8, "written as <tool_call>...</tool_call>, parsed back"


def test_under_auto_a_call_spelt_over_several_tokens_is_read_without_a_grammar(oai):
    """A history of calls the base model copies. In Gemma's vocabulary `<tool_call>` is several tokens, so no lazy
    grammar waits for it (the token completing it could carry text the grammar refuses, which aborts llama.cpp):
    the answer is read as written, a call when it parses, text otherwise, and the backend keeps serving. A
    one-token opener's lazy grammar is checked in tests/test_tool_parsers.py."""
    history = []
    for i, city in enumerate(["Oslo", "Paris", "Oslo"]):
        call = {"id": f"call_{i}", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
        history += [{"role": "user", "content": f"Weather in {city}?"},
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": f"call_{i}", "content": "Sunny"},
                    {"role": "assistant", "content": "It is sunny."}]
    answer = oai.chat.completions.create(model=QWEN, messages=history + [{"role": "user", "content": "And Paris?"}],
                                         tools=[WEATHER], max_tokens=30, temperature=0, parallel_tool_calls=False)
    choice = answer.choices[0]
    if choice.message.tool_calls:  # parsed from what the model wrote (it may run on to max_tokens after it)
        assert choice.message.tool_calls[0].function.name == "get_weather"
        json.loads(choice.message.tool_calls[0].function.arguments)
    else:
        assert choice.finish_reason in ("stop", "length") and isinstance(choice.message.content, str)
    assert oai.chat.completions.create(model=QWEN, messages=ASK, **SHORT).choices[0].message.role == "assistant"


def test_each_familys_grammar_compiles_in_llama_cpp(gemma_gguf):
    import llama_cpp as ll
    from llama_cpp._internals import LlamaModel

    from server.chat.reasoning import after_reasoning
    from server.chat.tool_formats import FORMATS
    from server.chat.tools import parse_tool_use, tool_grammar

    params = ll.llama_model_default_params()
    params.vocab_only = True
    model = LlamaModel(path_model=str(gemma_gguf), params=params, verbose=False)
    vocab = ll.llama_model_get_vocab(model.model)
    for fmt in FORMATS.values():
        for body in ({"tools": [WEATHER, CLOCK]}, {"tools": [WEATHER, NESTED], "tool_choice": "required"}):
            grammar = tool_grammar(fmt, parse_tool_use(body))
            for text in (grammar, after_reasoning(grammar, True), after_reasoning(grammar, False)):
                sampler = ll.llama_sampler_init_grammar(vocab, text.encode(), b"root")
                assert sampler, (fmt.name, body, text)
                ll.llama_sampler_free(sampler)
    model.close()
