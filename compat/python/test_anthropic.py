"""The anthropic Python SDK against the proxy's POST /v1/messages (the
Anthropic Messages API ingress): a consortium, a Claude passthrough model
("claude/claude-haiku-4-5": the anthropic provider "claude", served by the
fake's Messages API), and an OpenAI-compatible passthrough model
("fake/m1", served by the fake's chat completions)."""

import json

import anthropic
import pytest

from conftest import CLAUDE_MODEL, COUNCIL_MEMBERS

# The passthrough model the client names, and the model the fake sees.
CLAUDE = "claude/" + CLAUDE_MODEL


def root(stack):
    """The proxy's URL without /v1: the anthropic SDK adds /v1/messages."""
    return stack.base_url.removesuffix("/v1")


@pytest.fixture
def client(stack):
    return anthropic.Anthropic(base_url=root(stack), api_key=stack.key, max_retries=0, timeout=30)


def script(fake, text):
    """The same answer from the consortium's arbiter, Claude and m1."""
    fake.script_arbiter(text)
    fake.script(CLAUDE_MODEL, {"content": text})
    fake.script("m1", {"content": text})


def sent_to(fake, model):
    """What the members of "council", Claude or m1 received."""
    if model == "council":
        members = fake.member_requests()
        assert len(members) == sum(COUNCIL_MEMBERS.values())
        return members
    sent = fake.requests(model.split("/", 1)[1])
    assert len(sent) == 1
    return sent


@pytest.mark.parametrize("model", ["council", CLAUDE, "fake/m1"])
def test_create(client, fake, model):
    script(fake, "Canberra, said through the Messages API.")
    msg = client.messages.create(
        model=model,
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Capital of Australia?"}],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.model == model
    [block] = msg.content
    assert block.type == "text" and block.text == "Canberra, said through the Messages API."
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    for r in sent_to(fake, model):
        if model != CLAUDE:
            assert r["path"] == "/v1/chat/completions"
            assert r["messages"] == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Capital of Australia?"}]
        else:
            # Through the proxy's anthropic provider: the fake's Messages API.
            assert r["path"] == "/v1/messages"
            assert "Be brief." in json.dumps(r["body"]["system"])
            assert r["body"]["messages"] == [{"role": "user", "content": "Capital of Australia?"}] or \
                r["body"]["messages"][0]["content"][0]["text"] == "Capital of Australia?"
            assert r["body"]["max_tokens"] == 200
            assert r["header"]["X-Api-Key"] == ["claude-provider-key"]


@pytest.mark.parametrize("model", ["council", CLAUDE, "fake/m1"])
def test_stream(client, fake, model):
    script(fake, "A streamed answer, word by word, for Claude's clients.")
    with client.messages.stream(
        model=model,
        max_tokens=200,
        messages=[{"role": "user", "content": "Stream it"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "A streamed answer, word by word, for Claude's clients."
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    sent_to(fake, model)


@pytest.mark.parametrize("model", ["council", CLAUDE])
def test_raw_event_stream(client, fake, model):
    """messages.create(stream=True): Anthropic's event sequence."""
    script(fake, "Every event in its place.")
    types, deltas = [], []
    for event in client.messages.create(model=model, max_tokens=200, stream=True,
                                        messages=[{"role": "user", "content": "Stream it"}]):
        types.append(event.type)
        if event.type == "content_block_delta":
            assert event.delta.type == "text_delta"
            deltas.append(event.delta.text)
        if event.type == "message_start":
            assert event.message.usage.output_tokens == 0
        if event.type == "message_delta":
            assert event.delta.stop_reason == "end_turn"
            assert event.usage.output_tokens > 0
    assert "".join(deltas) == "Every event in its place."
    assert types[0] == "message_start"
    assert types[1] == "content_block_start"
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types) <= {"message_start", "content_block_start", "content_block_delta",
                          "content_block_stop", "message_delta", "message_stop", "ping"}


def test_history(client, fake):
    """The resent history continues the consortium's conversation."""
    fake.script_arbiter("It is 4.", "It is 6.")
    messages = [{"role": "user", "content": "What is 2+2?"}]
    first = client.messages.create(model="council", max_tokens=100, messages=messages)
    messages += [{"role": "assistant", "content": first.content}, {"role": "user", "content": "And 3+3?"}]
    second = client.messages.create(model="council", max_tokens=100, messages=messages)
    assert second.content[0].text == "It is 6."
    for r in fake.member_requests()[-3:]:
        assert r["messages"] == [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "It is 4."},
            {"role": "user", "content": "And 3+3?"},
        ]


def test_content_blocks_and_stop_sequences(client, fake):
    script(fake, "Blocks read.")
    msg = client.messages.create(
        model=CLAUDE,
        max_tokens=50,
        extra_body={"temperature": 0.3},  # this SDK version has no temperature argument
        stop_sequences=["END"],
        system=[{"type": "text", "text": "Be brief."}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "Read"}, {"type": "text", "text": "these"}]}],
    )
    assert msg.content[0].text == "Blocks read."
    [sent] = fake.requests(CLAUDE_MODEL)
    assert sent["body"]["stop_sequences"] == ["END"]
    assert sent["body"]["temperature"] == 0.3
    assert "Read" in str(sent["body"]["messages"]) and "these" in str(sent["body"]["messages"])


def test_bearer_key(stack, fake):
    """A client key as Authorization: Bearer works as x-api-key does."""
    script(fake, "Bearer accepted.")
    client = anthropic.Anthropic(base_url=root(stack), auth_token=stack.key, max_retries=0)
    msg = client.messages.create(model="council", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "Bearer accepted."


def test_errors(stack, client, fake):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="nope/model", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404
    assert e.value.body["type"] == "error"
    assert "nope/model" in e.value.body["error"]["message"]
    bad = anthropic.Anthropic(base_url=root(stack), api_key="wrong-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="council", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="council", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
                               tools=[{"name": "f", "input_schema": {"type": "object"}}])
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert fake.requests() == []


def test_stream_error(client, fake):
    """Every member failing after the stream began: the SDK raises the
    error event."""
    fake.script("m1", {"status": 500, "error": "member exploded"})
    fake.script("m2", {"status": 500, "error": "member exploded"})
    with pytest.raises(anthropic.APIError, match="too few member answers"):
        with client.messages.stream(model="council", max_tokens=50,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            for _ in stream.text_stream:
                pass
