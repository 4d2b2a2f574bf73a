"""The chat template a model is served with, as text for clients that read it (Ollama's `/api/show`): the GGUF's
own Jinja template, or for a model without one a Jinja template that renders what its family's format
(server.chat.families, llama-cpp-python's chat formats) renders. tests/test_shown_templates.py renders each of these
and compares it with the format it stands for, so the text shown cannot drift from the prompt built."""
from __future__ import annotations

# Every piece of text is an expression and every tag strips the whitespace around it, so the text renders the same
# under any Jinja whitespace settings (llama-cpp-python's trim_blocks and lstrip_blocks, or a client's defaults).

# server.chat.families.format_gemma: system text opens the next user turn (after a blank line), or stands as a
# user turn of its own at the end; contents trimmed; an open model turn last.
GEMMA = """{%- set pending = namespace(system=[]) -%}
{%- for message in messages -%}
  {%- set text = (message.content or '') | trim -%}
  {%- if message.role == 'system' -%}
    {%- set pending.system = pending.system + [text] -%}
  {%- else -%}
    {%- if message.role == 'user' and pending.system -%}
      {%- set text = (pending.system + [text]) | join('\\n\\n') | trim -%}
      {%- set pending.system = [] -%}
    {%- endif -%}
    {{- '<start_of_turn>' + ('model' if message.role == 'assistant' else message.role) + '\\n' -}}
    {{- text + '<end_of_turn>\\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if pending.system -%}
  {{- '<start_of_turn>user\\n' + (pending.system | join('\\n') | trim) + '<end_of_turn>\\n' -}}
{%- endif -%}
{{- '<start_of_turn>model\\n' -}}"""

# llama-cpp-python's format_chatml: a system turn (the first system message's text, empty without one), then
# the user and assistant turns; other roles are left out.
CHATML = """{{- '<|im_start|>system\\n' -}}
{%- for message in messages if message.role == 'system' -%}
  {%- if loop.first -%}{{- message.content -}}{%- endif -%}
{%- endfor -%}
{{- '<|im_end|>\\n' -}}
{%- for message in messages if message.role in ('user', 'assistant') -%}
  {{- '<|im_start|>' + message.role + '\\n' -}}
  {%- if message.content -%}{{- message.content + '<|im_end|>\\n' -}}{%- endif -%}
{%- endfor -%}
{{- '<|im_start|>assistant\\n' -}}"""

FAMILY_TEMPLATES = {"gemma": GEMMA, "chatml": CHATML}


def family_template(name: str) -> str:
    """The template text of the family format `name` ("" for one this module does not know)."""
    return FAMILY_TEMPLATES.get(name, "")
