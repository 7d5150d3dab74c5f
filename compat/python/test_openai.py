"""openai-python against the proxy: a consortium and a passthrough model."""

import time

import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from conftest import COUNCIL_MEMBERS


@pytest.fixture
def client(stack):
    return OpenAI(base_url=stack.base_url, api_key=stack.key, max_retries=0, timeout=30)


def test_passthrough_json(client, fake):
    fake.script("m1", {"content": "hello from m1"})
    reply = client.chat.completions.create(
        model="fake/m1",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        temperature=0.2,
    )
    assert reply.choices[0].message.content == "hello from m1"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens > 0
    assert reply._request_id.startswith("req_")  # the proxy's X-Request-Id
    [sent] = fake.requests("m1")
    # Only the model is rewritten; the provider's key replaces the client's.
    assert sent["body"]["temperature"] == 0.2
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert sent["header"]["Authorization"] == ["Bearer fake-provider-key"]


def test_passthrough_stream_with_usage(client, fake):
    fake.script("m2", {"content": "a streamed passthrough answer"})
    stream = client.chat.completions.create(
        model="fake/m2",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
            assert chunk.choices == []
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == "a streamed passthrough answer"
    assert finish == "stop"
    assert usage is not None and usage.total_tokens > 0


def test_consortium_json(client, fake):
    fake.script_arbiter("Four, the members agree.")
    reply = client.chat.completions.create(
        model="council",
        messages=[{"role": "user", "content": "What is two plus two?"}],
    )
    assert reply.model == "council"
    assert reply.choices[0].message.content == "Four, the members agree."
    assert reply.choices[0].finish_reason == "stop"
    # usage sums every member instance and the arbiter.
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0
    extra = reply.model_extra["consortium"]
    assert extra["run_id"].startswith("run_") and extra["conversation_id"].startswith("conv_")
    assert len(extra["members"]) == sum(COUNCIL_MEMBERS.values())
    assert all(m["status"] == "ok" for m in extra["members"])
    members = fake.member_requests()
    assert sorted(r["model"] for r in members) == ["m1", "m2", "m2"]
    assert all(r["messages"][-1] == {"role": "user", "content": "What is two plus two?"} for r in members)


def test_consortium_stream_with_usage(client, fake):
    fake.script_arbiter("A streamed synthesis, word by word.")
    stream = client.chat.completions.create(
        model="council",
        messages=[{"role": "user", "content": "Stream the answer"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "A streamed synthesis, word by word."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.model == "council" for c in chunks)
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].choices[0].finish_reason == "stop"
    assert final[0].model_extra["consortium"]["run_id"].startswith("run_")
    # The usage chunk is last, with no choices.
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_consortium_stream_without_usage(client, fake):
    fake.script_arbiter("No usage asked for.")
    chunks = list(client.chat.completions.create(
        model="council", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "No usage asked for."
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_consortium_stream_unicode_and_stop(client, fake):
    """Non-ASCII text and markup survive the stream, and a stop sequence cuts
    the synthesis the client receives (not included)."""
    fake.script_arbiter("Grüße 🌍 aus 東京: <b>a & b</b> STOP and not this")
    stream = client.chat.completions.create(
        model="council", messages=[{"role": "user", "content": "Grüß mich"}], stream=True, stop=["STOP"])
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Grüße 🌍 aus 東京: <b>a & b</b> "
    assert chunks[-1].choices[0].finish_reason == "stop"
    # Members got the client's stop and text as sent.
    for r in fake.member_requests():
        assert r["body"]["stop"] == ["STOP"] and r["messages"][-1]["content"] == "Grüß mich"


def test_consortium_max_tokens(client, fake):
    """max_tokens bounds the synthesis (about 4 characters a token), with
    finish_reason "length"."""
    fake.script_arbiter("word " * 100)
    reply = client.chat.completions.create(
        model="council", messages=[{"role": "user", "content": "ramble"}], max_tokens=5)
    assert reply.choices[0].finish_reason == "length"
    assert 0 < len(reply.choices[0].message.content) <= 20


def test_consortium_stream_error(client, fake):
    """An error after the stream began (every member failed) is an error
    event, which the SDK raises as APIError with the proxy's message."""
    fake.script("m1", {"status": 500, "error": "member one exploded"})
    fake.script("m2", {"status": 500, "error": "member two exploded"})
    stream = client.chat.completions.create(
        model="council", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIError) as e:
        for _ in stream:
            pass
    assert "too few member answers" in e.value.message
    assert "member one exploded" in e.value.message


def test_slow_members_keep_the_stream_alive(client, fake):
    """Members slower than the proxy's 10 s keep-alive: the SDK's SSE parser
    skips the ": keep-alive" comments and gets the synthesis."""
    fake.script("m1", {"content": "slow", "delay": "10500ms"})
    fake.script("m2", {"content": "slow", "delay": "10500ms"})
    fake.script_arbiter("Worth the wait.")
    start = time.monotonic()
    chunks = list(client.chat.completions.create(
        model="council", messages=[{"role": "user", "content": "take your time"}], stream=True))
    assert time.monotonic() - start >= 10
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Worth the wait."


class Answer(BaseModel):
    answer: int
    reason: str


def test_consortium_structured_output(client, fake):
    """chat.completions.parse sends a json_schema response_format, which
    every member receives; the SDK parses the synthesis."""
    fake.script_arbiter('{"answer": 4, "reason": "arithmetic"}')
    reply = client.chat.completions.parse(
        model="council", messages=[{"role": "user", "content": "2+2?"}], response_format=Answer)
    assert reply.choices[0].message.parsed == Answer(answer=4, reason="arithmetic")
    for r in fake.member_requests():
        assert r["body"]["response_format"]["json_schema"]["name"] == "Answer"


def test_conversation_header(client, fake):
    """Continuation by the X-Consortium-Conversation header, with only the
    new message sent: every member sees the first turn and its synthesis."""
    fake.script_arbiter("Paris.", "About two million people.")
    first = client.chat.completions.with_raw_response.create(
        model="council", messages=[{"role": "user", "content": "Capital of France?"}])
    conversation = first.headers["X-Consortium-Conversation"]
    assert first.parse().model_extra["consortium"]["conversation_id"] == conversation
    assert first.headers["X-Consortium-Run-Id"].startswith("run_")
    fake.reset()
    fake.script_arbiter("About two million people.")
    second = client.chat.completions.create(
        model="council",
        messages=[{"role": "user", "content": "How many people live there?"}],
        extra_headers={"X-Consortium-Conversation": conversation},
    )
    assert second.choices[0].message.content == "About two million people."
    assert second.model_extra["consortium"]["conversation_id"] == conversation
    members = fake.member_requests()
    assert len(members) == 3
    for r in members:
        assert r["messages"] == [
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "How many people live there?"},
        ]


def test_models(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["council", "best", "quick", "tiered", "fake/m1", "fake/m2", "fake/emb"]
    for name in ("council", "best", "tiered"):
        assert client.models.retrieve(name).owned_by == "consortium"
    m1 = client.models.retrieve("fake/m1")
    assert m1.id == "fake/m1" and m1.owned_by == "fake"


def test_embeddings(client, fake):
    # openai-python asks for base64 and decodes it back to floats.
    out = client.embeddings.create(model="fake/emb", input=["one", "two"])
    assert len(out.data) == 2 and len(out.data[0].embedding) == 8
    [sent] = fake.requests("emb")
    assert sent["path"] == "/v1/embeddings"


def test_unknown_model_is_not_found(client, fake):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope/model", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404
    assert e.value.code == "model_not_found"
    assert "nope/model" in e.value.message
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope/model")
    assert fake.requests() == []


def test_bad_key_is_authentication_error(stack, fake):
    bad = OpenAI(base_url=stack.base_url, api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="council", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    assert "Incorrect API key provided." in e.value.message
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert fake.requests() == []


def test_rate_limited_key(stack, fake):
    limited = OpenAI(base_url=stack.base_url, api_key="limited-key", max_retries=0)
    fake.script("m1", {"content": "once"})
    limited.chat.completions.create(model="fake/m1", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as e:
        limited.chat.completions.create(model="fake/m1", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 429
    assert int(e.value.response.headers["Retry-After"]) > 0
    assert len(fake.requests("m1")) == 1


def test_provider_error_keeps_its_status(client, fake):
    fake.script("m1", {"status": 400, "error": "max_tokens is too large for this model"})
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="fake/m1", messages=[{"role": "user", "content": "hi"}])
    assert "max_tokens is too large" in e.value.message


def test_consortium_refuses_n(client, fake):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="council", n=2, messages=[{"role": "user", "content": "hi"}])
    assert e.value.param == "n"
