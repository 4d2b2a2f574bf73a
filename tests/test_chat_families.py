"""Family chat formats for GGUFs without a template: no message is dropped (docs/api.md, Generating)."""
from __future__ import annotations

from server.chat.families import format_gemma


def test_gemma_puts_the_system_text_at_the_start_of_the_first_user_turn():
    rendered = format_gemma([{"role": "system", "content": "Answer in French."},
                             {"role": "user", "content": " Hello "},
                             {"role": "assistant", "content": "Bonjour"},
                             {"role": "user", "content": "Again"}])
    assert rendered.prompt == ("<start_of_turn>user\nAnswer in French.\n\nHello<end_of_turn>\n"
                               "<start_of_turn>model\nBonjour<end_of_turn>\n"
                               "<start_of_turn>user\nAgain<end_of_turn>\n"
                               "<start_of_turn>model\n")
    assert rendered.stop == "<end_of_turn>\n"


def test_gemma_keeps_a_system_message_that_no_user_turn_follows():
    rendered = format_gemma([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes"},
                             {"role": "system", "content": "Be brief."}])
    assert "<start_of_turn>user\nBe brief.<end_of_turn>\n<start_of_turn>model\n" in rendered.prompt


def test_gemma_reads_the_text_parts_of_a_content_list():
    rendered = format_gemma([{"role": "system", "content": [{"type": "text", "text": "Rules."}]},
                             {"role": "user", "content": [{"type": "text", "text": "Go"}]}])
    assert rendered.prompt.startswith("<start_of_turn>user\nRules.\n\nGo<end_of_turn>\n")
