"""llama-server's answer shapes from the engine's events (server/api/llama_shapes.py), without a model: how a
generation ended (`stop_type`, `stopping_word`) and `response_fields`."""
from __future__ import annotations

from server.api.llama_shapes import CompletionShape
from server.api.native_params import parse_native_completion
from server.engine.jobs import Finished, Job
from server.engine.sampling import Sampling
from server.engine.textout import TextOut


def shape(**body) -> CompletionShape:
    asked = parse_native_completion({"model": "m", "prompt": "x", **body})
    return CompletionShape("m", asked, Job(prompt=[2, 5], sampling=Sampling(), stop=("END",)), "<bos>x", 64)


def test_a_stop_string_is_named_as_the_stopping_word():
    out = TextOut(["END", "STOP"])
    assert out.push(b"abc ST") == "abc " and out.push(b"OP and more") == ""
    assert out.stopped and out.stop_word == "STOP"


def test_stop_type_says_why_generation_ended():
    answer = shape()
    assert answer.whole("a", Finished("stop", 2, 1, 0))["stop_type"] == "eos"
    worded = answer.whole("a", Finished("stop", 2, 1, 0, stop_word="END"))
    assert (worded["stop_type"], worded["stopping_word"]) == ("word", "END")
    assert answer.whole("a", Finished("length", 2, 4, 0))["stop_type"] == "limit"


def test_response_fields_pick_fields_and_nested_ones_by_path():
    answer = shape(response_fields=["content", "timings/predicted_n", "generation_settings/n_predict", "nothing"])
    picked = answer.whole("text", Finished("length", 2, 4, 1))
    assert picked == {"content": "text", "timings/predicted_n": 4, "generation_settings/n_predict": -1}


def test_the_streams_last_event_is_the_final_object_with_empty_content():
    events = list(shape(stream=True).stream(iter(["a", "b", Finished("stop", 2, 2, 0)])))
    assert [e.startswith('data: {"index":0,"content":') for e in events] == [True] * 3
    assert '"content":"b","tokens":[],"stop":false' in events[1] and '"stop":true' in events[2]
    assert '"content":""' in events[2] and not any("[DONE]" in e for e in events)
