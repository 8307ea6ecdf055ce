"""Record formats, chat rendering and the response-only token mask."""

import pytest
from conftest import chat

from saefilter.inputs.formats import Conversation, FormatError, Turn, detect_format, to_conversation
from saefilter.inputs.render import encode, render

CONVERSATION = (Turn("user", "write a poem about cats"), Turn("assistant", "here it is : cats and dogs"))


@pytest.mark.parametrize(
    "record",
    [
        chat("write a poem about cats", "here it is : cats and dogs"),
        {"conversations": [{"from": "human", "value": "write a poem about cats"}, {"from": "gpt", "value": "here it is : cats and dogs"}]},
        {"prompt": "write a poem about cats", "completion": "here it is : cats and dogs"},
        {"prompt": [{"role": "user", "content": "write a poem about cats"}], "completion": [{"role": "assistant", "content": "here it is : cats and dogs"}]},
        {"instruction": "write a poem about cats", "input": "", "output": "here it is : cats and dogs"},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "write a poem about cats"}]}, {"role": "assistant", "content": "here it is : cats and dogs"}]},
    ],
)
def test_every_format_gives_the_same_conversation(record):
    assert to_conversation(record).turns == CONVERSATION


def test_alpaca_input_is_appended_to_the_instruction():
    conversation = to_conversation({"instruction": "add numbers", "input": "1 + 2", "output": "3"})
    assert conversation.turns[0] == Turn("user", "add numbers\n\n1 + 2")


def test_text_and_field():
    assert to_conversation({"text": "hello there"}).text == "hello there"
    assert to_conversation({"body": "hello there"}, field="body").text == "hello there"
    assert detect_format({"text": "x", "messages": []}) == "chat"


@pytest.mark.parametrize(
    "record, reason",
    [
        ({"foo": 1}, "no recognisable text field"),
        ({"text": "   "}, "empty text"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "unknown role"),
        ({"messages": "hello"}, "must be a list"),
        ({"body": "x"}, "no recognisable"),
    ],
)
def test_unusable_records_say_why(record, reason):
    with pytest.raises(FormatError, match=reason):
        to_conversation(record)


def test_missing_field_lists_the_keys():
    with pytest.raises(FormatError, match="no field 'body'.*keys: text"):
        to_conversation({"text": "x"}, field="body")


def scored_text(tokenizer, conversation, tokens="response", max_tokens=512):
    encoded = encode(render(conversation, tokenizer, tokens), tokenizer, max_tokens)
    return [tokenizer.convert_ids_to_tokens(i) for i, s in zip(encoded.input_ids, encoded.scored) if s], encoded


def test_response_mask_covers_exactly_the_assistant_turns(tokenizer):
    conversation = Conversation(
        turns=(
            Turn("system", "you are good"),
            Turn("user", "hello"),
            Turn("assistant", "hi there"),
            Turn("user", "tell me a story"),
            Turn("assistant", "once upon a time"),
        )
    )
    tokens, _ = scored_text(tokenizer, conversation)
    assert tokens == ["hi", "there", "<|im_end|>", "once", "upon", "a", "time", "<|im_end|>"]


def test_all_tokens_mode_scores_the_prompt_but_not_the_first_position(tokenizer):
    tokens, encoded = scored_text(tokenizer, Conversation(turns=CONVERSATION), tokens="all")
    assert not encoded.scored[0]
    assert "user" in tokens and "poem" in tokens and "cats" in tokens
    assert sum(encoded.scored) == len(encoded.input_ids) - 1 - tokens.count("\n")


def test_plain_text_scores_every_token_after_the_first(tokenizer):
    tokens, _ = scored_text(tokenizer, Conversation(text="once upon a time there"))
    assert tokens == ["upon", "a", "time", "there"]


def test_chat_without_assistant_turn_is_refused_in_response_mode(tokenizer):
    with pytest.raises(FormatError, match="no assistant turn"):
        render(Conversation(turns=(Turn("user", "hello"),)), tokenizer, "response")


def test_truncation_is_flagged_and_can_leave_nothing_to_score(tokenizer):
    long_answer = Conversation(turns=(Turn("user", "hello " * 50), Turn("assistant", "hi there")))
    with pytest.raises(FormatError, match="raise --max-tokens"):
        scored_text(tokenizer, long_answer, max_tokens=20)
    _, encoded = scored_text(tokenizer, Conversation(text="cats " * 40), max_tokens=10)
    assert encoded.truncated and len(encoded.input_ids) == 10
