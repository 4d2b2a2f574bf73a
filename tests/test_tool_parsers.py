"""Tool calls and reasoning read back per model family (server/chat/): calls as each family's real chat template
writes them (Qwen 2.5/3, Llama 3.1, Mistral Nemo, in tests/data/chat_templates from llama.cpp's models/templates),
recorded answers that are malformed or cut short, and streams split at every position, inside the trigger too."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from server.chat.agent import plan_turn
from server.chat.answer import AnswerReader, DeltaStream
from server.chat.prompts import ChatFormat
from server.chat.tool_formats import FORMATS, format_for_template
from server.chat.tools import ToolUse, parse_tool_use
from server.errors import InvalidRequest

TEMPLATES = Path(__file__).parent / "data" / "chat_templates"
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}
ARGS = {"city": "Paris \"Ville\" {lumière}", "days": 3}  # quotes and braces inside a string
FAMILIES = [("Qwen-Qwen2.5-7B-Instruct", "hermes", "<|im_end|>"), ("Qwen-Qwen3-0.6B", "hermes", "<|im_end|>"),
            ("meta-llama-Llama-3.1-8B-Instruct", "llama3", "<|eot_id|>"),
            ("mistralai-Mistral-Nemo-Instruct-2407", "mistral", "</s>")]


def _chat(name: str) -> ChatFormat:
    template = (TEMPLATES / f"{name}.jinja").read_text()
    return ChatFormat(Jinja2ChatFormatter(template, "</s>", "<s>"), has_template=True, template=template)


def _written_call(name: str) -> str:
    """The assistant turn of a call as the family's own template writes it (what its models learned)."""
    call = {"id": "abcdefghi", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(ARGS)}}
    before = [{"role": "user", "content": "Weather in Paris?"}]
    turn = plan_turn(_chat(name), before + [{"role": "assistant", "content": None, "tool_calls": [call]}],
                     parse_tool_use({"tools": [WEATHER]}), None, lambda _: None)
    start = plan_turn(_chat(name), before, parse_tool_use({"tools": [WEATHER]}), None, lambda _: None)
    assert turn.prompt.text.startswith(start.prompt.text)  # the prompt up to the answer, then the answer
    written = turn.prompt.text[len(start.prompt.text):]
    return written[written.index("{" if "llama" in name else "<tool_call>" if "Qwen" in name else "[TOOL_CALLS]"):]


def _streamed(reader: AnswerReader, pieces: list[str]) -> tuple[str, str, list[dict]]:
    """Content, reasoning and calls (id, name, arguments) reassembled from a stream's deltas."""
    stream, content, reasoning, calls = DeltaStream(reader), [], [], {}
    for delta in [d for piece in pieces for d in stream.push(piece)] + stream.finish():
        content.append(delta.get("content", ""))
        reasoning.append(delta.get("reasoning_content", ""))
        for call in delta.get("tool_calls", []):
            if "id" in call:
                assert call["index"] not in calls and call["type"] == "function" and call["function"]["name"]
                calls[call["index"]] = {"id": call["id"], "name": call["function"]["name"], "arguments": ""}
            calls[call["index"]]["arguments"] += call["function"]["arguments"]
    return "".join(content), "".join(reasoning), [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("name, family, _end", FAMILIES)
def test_each_family_is_recognised_from_its_template(name, family, _end):
    assert format_for_template((TEMPLATES / f"{name}.jinja").read_text()).name == family


def test_a_template_without_tools_gets_the_generic_json_format():
    assert format_for_template(None).name == "generic"
    assert format_for_template((TEMPLATES / "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja").read_text()).name \
        == "generic"


@pytest.mark.parametrize("name, family, end", FAMILIES)
def test_a_call_as_the_template_writes_it_parses_back_whole_and_streamed_at_every_split(name, family, end):
    written = "Let me check. " + _written_call(name).split(end)[0] if family == "hermes" else \
        _written_call(name).split(end)[0]
    reader = AnswerReader(FORMATS[family], new_id=lambda: "id1")
    message = reader.message(written)
    [call] = message["tool_calls"]
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == ARGS
    assert (message["content"] or "").strip() == ("Let me check." if family == "hermes" else "")
    for split in range(1, len(written)):
        content, _, calls = _streamed(AnswerReader(FORMATS[family], new_id=lambda: "id1"),
                                      [written[:split], written[split:]])
        assert content.strip() == (message["content"] or "").strip(), split
        assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [("get_weather", ARGS)], split


def test_a_stream_one_character_a_piece_never_shows_the_trigger_as_content():
    text = 'Sure.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    stream = DeltaStream(AnswerReader(FORMATS["hermes"], new_id=lambda: "x"))
    deltas = [d for char in text for d in stream.push(char)] + stream.finish()
    assert "".join(d.get("content", "") for d in deltas) == "Sure."
    firsts = [c for d in deltas for c in d.get("tool_calls", []) if "id" in c]
    assert len(firsts) == 1 and firsts[0]["function"]["name"] == "get_weather"
    pieces = [c["function"]["arguments"] for d in deltas for c in d.get("tool_calls", [])]
    assert len(pieces) > 2 and json.loads("".join(pieces)) == {"city": "Oslo"}  # arguments in pieces


@pytest.mark.parametrize("family, recorded", [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}\n</tool_call>'),  # a brace short
    ("hermes", '<tool_call>\n{"name": "get_weather", "argu'),  # cut off by max_tokens
    ("hermes", "<tool_call>\nnot json at all\n</tool_call>"),
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": '),
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Oslo"'),
    ("generic", '{"tool_call": {"name": "get_weather", "arguments": {"city": "Os'),
])
def test_a_malformed_or_partial_call_is_returned_as_content_not_as_a_call(family, recorded):
    message = AnswerReader(FORMATS[family]).message(recorded)
    assert "tool_calls" not in message and message["content"] == recorded


def test_parallel_calls_each_get_their_own_index_and_id():
    text = ('<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n'
            '<tool_call>\n{"name": "b", "arguments": {"x": 1}}\n</tool_call>')
    ids = iter(["first", "second"])
    content, _, calls = _streamed(AnswerReader(FORMATS["hermes"], new_id=lambda: next(ids)), [text[:30], text[30:]])
    assert content == "" and [(c["id"], c["name"], c["arguments"]) for c in calls] == \
        [("first", "a", "{}"), ("second", "b", '{"x": 1}')]


def test_generic_answers_a_response_or_calls():
    reader = AnswerReader(FORMATS["generic"], new_id=lambda: "c")
    assert reader.message('{"response": "Hi \\"there\\"\\n"}') == {"role": "assistant", "content": 'Hi "there"\n'}
    text = '{"tool_calls": [{"name": "a", "arguments": {"q": "}"}}, {"name": "b", "arguments": {}}]}'
    assert [c["function"]["name"] for c in reader.message(text)["tool_calls"]] == ["a", "b"]
    content, _, calls = _streamed(AnswerReader(FORMATS["generic"], new_id=lambda: "c"), list(text))
    assert content == "" and [json.loads(c["arguments"]) for c in calls] == [{"q": "}"}, {}]
    content, _, _ = _streamed(AnswerReader(FORMATS["generic"]), list('{"response": "a\\u00e9b"}'))
    assert content == "aéb"


@pytest.mark.parametrize("split", range(1, 40))
def test_reasoning_is_split_from_the_answer_at_every_split(split):
    text = "<think>\nThe user greets.\n</think>\n\nHello!"
    content, reasoning, _ = _streamed(AnswerReader(None, thinks=True), [text[:split], text[split:]])
    assert (reasoning.strip(), content) == ("The user greets.", "Hello!")
    assert AnswerReader(None, thinks=True).message(text) == \
        {"role": "assistant", "content": "Hello!", "reasoning_content": "The user greets.\n"}


def test_qwen3_thinks_unless_asked_not_to_and_r1_opens_the_block_in_its_prompt():
    messages = [{"role": "user", "content": "Hi"}]
    thinking = plan_turn(_chat("Qwen-Qwen3-0.6B"), messages, None, None, lambda _: None)
    assert thinking.reader.thinks and not thinking.reader.opened
    off = plan_turn(_chat("Qwen-Qwen3-0.6B"), messages, None, False, lambda _: None)
    assert off.prompt.text.endswith("<think>\n\n</think>\n\n")
    assert AnswerReader(None, thinks=True).read("Hello").content == "Hello"  # no block: all answer
    r1 = plan_turn(_chat("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"), messages, None, None, lambda _: None)
    assert r1.reader.opened
    assert r1.reader.read("Thinking it over.\n</think>\n\nHi!").reasoning == "Thinking it over.\n"


def test_tools_reach_the_template_and_calls_in_history_render_with_object_arguments():
    turn = plan_turn(_chat("Qwen-Qwen2.5-7B-Instruct"), [{"role": "user", "content": "Hi"}],
                     parse_tool_use({"tools": [WEATHER]}), None, lambda text: 151657 if text == "<tool_call>" else None)
    assert '"name": "get_weather"' in turn.prompt.text and turn.grammar and turn.trigger_tokens == (151657,)
    assert "<tool_call>" in _written_call("Qwen-Qwen2.5-7B-Instruct")
    assert '"days": 3' in _written_call("Qwen-Qwen2.5-7B-Instruct")  # an object, not a JSON string


def test_under_auto_a_lazy_grammar_waits_for_an_opener_that_is_one_token():
    """Only a one-token opener triggers the grammar: the token completing an opener spelt over several tokens may
    carry text the grammar refuses, and llama.cpp aborts the process on that; such calls are read unconstrained."""
    use, hi = parse_tool_use({"tools": [WEATHER]}), [{"role": "user", "content": "Hi"}]
    one_token = plan_turn(_chat("Qwen-Qwen2.5-7B-Instruct"), hi, use, None, lambda text: 7 if text == "<tool_call>"
                          else None)
    spelt = plan_turn(_chat("Qwen-Qwen2.5-7B-Instruct"), hi, use, None, lambda _: None)
    thinking = plan_turn(_chat("Qwen-Qwen3-0.6B"), hi, use, None, lambda text: 7 if text == "<tool_call>" else None)

    assert (one_token.trigger_tokens, one_token.triggers) == ((7,), ()) and one_token.grammar
    assert (spelt.grammar, spelt.triggers, spelt.trigger_tokens) == (None, (), ())
    assert thinking.grammar and thinking.triggers and all("</think>" in p for p in thinking.triggers)


def test_a_template_without_tools_describes_them_in_the_system_message():
    chat = ChatFormat(lambda messages, **_: _Rendered(json.dumps(messages)), has_template=False)
    turn = plan_turn(chat, [{"role": "user", "content": "Hi"}], parse_tool_use({"tools": [WEATHER]}), None,
                     lambda _: None)
    [system, _] = json.loads(turn.prompt.text)
    assert system["role"] == "system" and "get_weather" in system["content"] and "tool_call" in system["content"]
    assert turn.triggers == () and "response" in turn.grammar  # the whole answer is JSON: never lazy


@pytest.mark.parametrize("body, problem", [
    ({"tools": {"type": "function"}}, "`tools` must be a list"),
    ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "function.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "not in `tools`"),
    ({"tools": [WEATHER], "tool_choice": "always"}, "`tool_choice` must be"),
    ({"tool_choice": "required"}, "has no `tools`"),
    ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
])
def test_bad_tools_are_refused_naming_the_field(body, problem):
    with pytest.raises(InvalidRequest) as caught:
        parse_tool_use(body)
    assert problem in str(caught.value)


def test_a_named_tool_choice_offers_that_tool_alone():
    use = parse_tool_use({"tools": [WEATHER, {"type": "function", "function": {"name": "other"}}],
                          "tool_choice": {"type": "function", "function": {"name": "other"}}})
    assert use == ToolUse(use.tools, "function", "other", True) and [t["function"]["name"] for t in use.offered()] \
        == ["other"]


class _Rendered:
    def __init__(self, prompt: str):
        self.prompt, self.stop, self.added_special = prompt, [], False


def test_a_schema_that_gives_no_grammar_is_refused_naming_tools_before_any_load():
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "x": {"type": "string", "maxLength": 10**7}}}}}
    with pytest.raises(InvalidRequest) as caught:
        parse_tool_use({"tools": [bad], "tool_choice": "required"})  # when the body is read: before any load
    assert caught.value.param == "tools" and "tools[0].function.parameters" in caught.value.message


def test_a_streamed_call_cut_short_stays_a_call_and_its_text_never_becomes_content():
    text = 'Checking.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Os'
    content, _, calls = _streamed(AnswerReader(FORMATS["hermes"], new_id=lambda: "x"), [text[:30], text[30:]])
    assert content == "Checking." and calls == [{"id": "x", "name": "get_weather", "arguments": '{"city": "Os'}]


FG_CALL = ("<start_function_call>call:get_weather{city:<escape>Paris, \"FR\"<escape>,days:3,"
           "opts:{metric:true,tags:[<escape>a<escape>,2]}}<end_function_call>")


def test_function_gemma_calls_read_back_as_json_arguments_whole_and_streamed():
    template = "{%- if tools -%}<start_function_declaration>{%- endif -%}<start_function_call>call:"
    assert format_for_template(template).name == "functiongemma"
    expected = {"city": 'Paris, "FR"', "days": 3, "opts": {"metric": True, "tags": ["a", 2]}}
    message = AnswerReader(FORMATS["functiongemma"], new_id=lambda: "f").message("Sure. " + FG_CALL)
    assert message["content"] == "Sure. " and json.loads(message["tool_calls"][0]["function"]["arguments"]) == expected
    for split in range(1, len(FG_CALL)):
        content, _, calls = _streamed(AnswerReader(FORMATS["functiongemma"], new_id=lambda: "f"),
                                      [FG_CALL[:split], FG_CALL[split:]])
        assert content == "" and [(c["name"], json.loads(c["arguments"])) for c in calls] == \
            [("get_weather", expected)], split
    cut = AnswerReader(FORMATS["functiongemma"]).message(FG_CALL[:40])
    assert "tool_calls" not in cut and cut["content"] == FG_CALL[:40]


def test_a_thinking_model_opens_its_grammar_only_after_the_reasoning():
    messages, use = [{"role": "user", "content": "Hi"}], parse_tool_use({"tools": [WEATHER]})
    thinking = plan_turn(_chat("Qwen-Qwen3-0.6B"), messages, use, None, lambda _: 7)
    assert thinking.trigger_tokens == () and thinking.triggers == (r"[\s\S]*?</think>[\s\S]*?(<tool_call>)[\s\S]*",)
    quiet = plan_turn(_chat("Qwen-Qwen3-0.6B"), messages, use, False, lambda _: 7)
    assert quiet.trigger_tokens == (7,) and quiet.triggers == ()  # one token spells <tool_call>: it triggers


def test_calls_before_one_cut_short_are_kept():
    text = '[TOOL_CALLS][{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": '
    message = AnswerReader(FORMATS["mistral"], new_id=lambda: "abcdefghi").message(text)
    assert message["content"] is None and [c["function"]["name"] for c in message["tool_calls"]] == ["a"]


def test_a_forced_call_still_lets_a_thinking_model_reason_first():
    messages, use = [{"role": "user", "content": "Hi"}], parse_tool_use({"tools": [WEATHER], "tool_choice": "required"})
    r1 = plan_turn(_chat("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"), messages, use, None, lambda _: None)
    assert r1.reader.opened and '\nroot ::= ( [^<] | "<" [^/] )* "</think>"' in r1.grammar  # inside the block
    qwen3 = plan_turn(_chat("Qwen-Qwen3-0.6B"), messages, use, None, lambda _: None)
    assert 'root ::= ( "<think>"' in qwen3.grammar and "answer-root ::=" in qwen3.grammar
    quiet = plan_turn(_chat("Qwen-Qwen3-0.6B"), messages, use, False, lambda _: None)
    assert "think" not in quiet.grammar  # thinking off: the call comes at once
    reader = r1.reader
    assert reader.read('Plan.</think>\n{"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo"}}}').calls
