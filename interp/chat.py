"""Chat formats: the templates the packaged and tiny models are given (a GGUF may carry none), and
rendering a chat with no system turn at all where a template would insert a default one
(`system_prompt = "none"`, `LoadedModel.chat`).
"""

from __future__ import annotations

# ChatML as SmolLM2 ships it, default system prompt included (DESIGN.md: the template inserts it).
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Gemma's turn format; the base GGUF has no template. A system message is folded into the first
# user turn, as Gemma's own template does.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] + '\n\n' %}"
    "{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
    "{% for m in msgs %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{% if loop.first and role == 'user' %}{{ sys }}{% endif %}"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

SYSTEM_PROMPTS = ("default", "none")
_MARK = "\x00interp-system-turn\x00"  # a system content no real message contains


def render_without_system(
    tokenizer, messages: list[dict], add_generation_prompt: bool = True, name: str = "model"
) -> str:
    """`messages` rendered with no system turn, where the template would insert a default one.

    The template is asked for the same chat after a system turn holding a marker, and for that
    system turn alone; the first starts with the second (ChatML: `<|im_start|>system\n...<|im_end|>\n`),
    which is cut off. Refused in one line where that cannot mean anything: messages that carry
    their own system turn, or a template with no system turn of its own (Gemma folds a system
    message into the first user turn and adds no default, so "default" already renders no system text)."""
    if messages and messages[0]["role"] == "system":
        raise ValueError(
            "system_prompt: 'none' renders no system turn, but these messages carry one; drop it or "
            "use system_prompt = 'default'"
        )
    apply = lambda msgs, gen: tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
    block = apply([{"role": "system", "content": _MARK}], False)
    marked = apply([{"role": "system", "content": _MARK}, *messages], add_generation_prompt)
    if _MARK not in block or not marked.startswith(block):
        raise ValueError(
            f"system_prompt: 'none' means no system turn, but {name}'s chat template has no system turn "
            "of its own and adds no default system prompt, so 'default' already renders none; use 'default'"
        )
    return marked[len(block) :]
