"""Which models have fill-in-the-middle, told from the GGUF file as llama.cpp tells it from the vocabulary
(core/fim.py, for Ollama's `insert`), and the parsing of llama-server's bodies that carry FIM requests."""
from __future__ import annotations

import pytest

from core.fim import has_fim_tokens
from server.api.native_params import parse_native_completion
from server.errors import InvalidRequest
from scripts.gguf_files import write_gguf

QWEN_CODER = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|file_sep|>"]
CODELLAMA = ["<unk>", "<s>", "</s>", "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"]


def vocab(*tokens: str) -> dict:
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": list(tokens)}


@pytest.mark.parametrize("metadata", [
    {"tokenizer.ggml.fim_pre_token_id": 1, "tokenizer.ggml.fim_suf_token_id": 3, "tokenizer.ggml.fim_mid_token_id": 2},
    {"tokenizer.ggml.prefix_token_id": 32007, "tokenizer.ggml.suffix_token_id": 32008,
     "tokenizer.ggml.middle_token_id": 32009},  # the keys older CodeLlama files carry
    vocab(*QWEN_CODER), vocab(*CODELLAMA), vocab("a", "<fim_prefix>", "<fim_middle>", "<fim_suffix>"),
], ids=["ids", "older-ids", "qwen-coder-texts", "codellama-texts", "starcoder-texts"])
def test_a_model_with_fim_tokens_has_insert(tmp_path, metadata):
    assert has_fim_tokens(write_gguf(tmp_path / "m.gguf", metadata=metadata)) is True


@pytest.mark.parametrize("metadata", [
    {}, vocab("<bos>", "<eos>", "hello"),
    vocab("<|fim_prefix|>", "<|fim_suffix|>"),  # no middle
    vocab("x<|fim_prefix|>", "<|fim_middle|>y", "<|fim_suffix|> "),  # the texts inside other tokens
    {"tokenizer.ggml.fim_pre_token_id": 1, "tokenizer.ggml.fim_suf_token_id": 3},
], ids=["nothing", "plain-vocab", "two-of-three", "inside-other-tokens", "two-ids"])
def test_a_model_without_them_has_no_insert(tmp_path, metadata):
    assert has_fim_tokens(write_gguf(tmp_path / "m.gguf", metadata=metadata)) is False


def test_infill_body_becomes_a_fim_request():
    asked = parse_native_completion({"model": "m", "input_prefix": "a", "input_suffix": "b", "prompt": "c",
                                     "input_extra": [{"filename": "f.py", "text": "x"}], "n_predict": -1},
                                    infill=True)
    assert (asked.fim.prefix, asked.fim.suffix, asked.fim.prompt) == ("a", "b", "c")
    assert asked.fim.extra == ({"filename": "f.py", "text": "x"},) and asked.n_predict is None


@pytest.mark.parametrize("body, named", [
    ({"prompt": ["one", "two"]}, "one prompt"), ({"prompt": {"a": 1}}, "prompt"), ({"n_predict": "4"}, "n_predict"),
    ({"grammar": "root ::= x", "json_schema": {}}, "grammar"), ({"response_fields": "content"}, "response_fields"),
])
def test_bad_completion_bodies_are_400_naming_the_field(body, named):
    with pytest.raises(InvalidRequest) as refused:
        parse_native_completion({"model": "m", **body})
    assert named in refused.value.message


def test_bad_input_extra_is_400():
    with pytest.raises(InvalidRequest, match="input_extra"):
        parse_native_completion({"model": "m", "input_extra": [{"text": 3}]}, infill=True)
