"""LangChain's ChatOpenAI (langchain-openai) against the proxy."""

import pytest
from pydantic import BaseModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI


def chat(stack, model, **kwargs):
    return ChatOpenAI(model=model, base_url=stack.base_url, api_key=stack.key, max_retries=0, timeout=30, **kwargs)


@pytest.mark.parametrize("model", ["council", "fake/m1"])
def test_invoke(stack, fake, model):
    fake.script_arbiter("The consortium's answer.")
    fake.script("m1", {"content": "The consortium's answer."})
    reply = chat(stack, model).invoke([SystemMessage("Be brief."), HumanMessage("Answer me")])
    assert isinstance(reply, AIMessage)
    assert reply.content == "The consortium's answer."
    assert reply.usage_metadata["total_tokens"] > 0
    assert reply.response_metadata["finish_reason"] == "stop"
    if model == "council":
        assert reply.response_metadata["model_name"] == "council"
        # Every member instance got the system prompt and the question.
        members = fake.member_requests()
        assert len(members) == 3
        for r in members:
            assert {"role": "system", "content": "Be brief."} in r["messages"]
            assert r["messages"][-1] == {"role": "user", "content": "Answer me"}


@pytest.mark.parametrize("model", ["council", "fake/m2"])
def test_stream(stack, fake, model):
    fake.script_arbiter("Streamed through LangChain.")
    fake.script("m2", {"content": "Streamed through LangChain."})
    chunks = list(chat(stack, model, stream_usage=True).stream("Stream it"))
    assert len(chunks) > 2
    assert "".join(c.content for c in chunks) == "Streamed through LangChain."
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["total_tokens"] > 0
    if model != "council":
        # stream_usage asked for include_usage, and passthrough forwarded it.
        [sent] = fake.requests("m2")
        assert sent["body"]["stream_options"] == {"include_usage": True}


def test_history(stack, fake):
    """LangChain sends the whole history each turn: the transcript match
    links the turn to its conversation, and members see it all."""
    fake.script_arbiter("It is 4.", "It is 6.")
    llm = chat(stack, "council")
    history = [HumanMessage("What is 2+2?")]
    first = llm.invoke(history)
    history += [first, HumanMessage("And 3+3?")]
    second = llm.invoke(history)
    assert second.content == "It is 6."
    for r in fake.member_requests()[-3:]:
        assert r["messages"] == [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "It is 4."},
            {"role": "user", "content": "And 3+3?"},
        ]
    # The responses' ids are the runs' (chatcmpl-run_...): both runs belong to
    # one conversation.
    runs = [stack.run(m.response_metadata["id"].removeprefix("chatcmpl-")) for m in (first, second)]
    assert runs[0]["conversation_id"] == runs[1]["conversation_id"] != ""


class Answer(BaseModel):
    answer: int
    reason: str


def test_structured_output(stack, fake):
    fake.script_arbiter('{"answer": 4, "reason": "arithmetic"}')
    out = chat(stack, "council").with_structured_output(Answer).invoke("What is 2+2?")
    assert out == Answer(answer=4, reason="arithmetic")
    for r in fake.member_requests():
        assert r["body"]["response_format"]["type"] == "json_schema"


def test_stream_error(stack, fake):
    fake.script("m1", {"status": 500, "error": "member exploded"})
    fake.script("m2", {"status": 500, "error": "member exploded"})
    with pytest.raises(Exception, match="too few member answers"):
        for _ in chat(stack, "council").stream("hi"):
            pass


# ChatOpenAI(use_responses_api=True) calls POST /v1/responses instead of
# chat completions.


@pytest.mark.parametrize("model", ["council", "fake/m1"])
def test_responses_api_invoke(stack, fake, model):
    fake.script_arbiter("Answered through the Responses API.")
    fake.script("m1", {"content": "Answered through the Responses API."})
    reply = chat(stack, model, use_responses_api=True).invoke([SystemMessage("Be brief."), HumanMessage("Answer me")])
    assert isinstance(reply, AIMessage)
    assert reply.text == "Answered through the Responses API."
    assert reply.response_metadata["id"].startswith("resp_")
    assert reply.usage_metadata["total_tokens"] > 0
    sent = fake.member_requests() if model == "council" else fake.requests("m1")
    assert sent
    for r in sent:
        assert r["path"] == "/v1/chat/completions"
        assert r["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Answer me"}]


@pytest.mark.parametrize("model", ["council", "fake/m2"])
def test_responses_api_stream(stack, fake, model):
    fake.script_arbiter("Streamed through the Responses API.")
    fake.script("m2", {"content": "Streamed through the Responses API."})
    chunks = list(chat(stack, model, use_responses_api=True).stream("Stream it"))
    assert len(chunks) > 2
    assert "".join(c.text for c in chunks) == "Streamed through the Responses API."
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["total_tokens"] > 0


def test_responses_api_history(stack, fake):
    """The whole history resent through the Responses API, earlier
    answers as output items: members see every turn."""
    fake.script_arbiter("It is 4.", "It is 6.")
    llm = chat(stack, "council", use_responses_api=True)
    history = [HumanMessage("What is 2+2?")]
    first = llm.invoke(history)
    history += [first, HumanMessage("And 3+3?")]
    second = llm.invoke(history)
    assert second.text == "It is 6."
    for r in fake.member_requests()[-3:]:
        assert r["messages"] == [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "It is 4."},
            {"role": "user", "content": "And 3+3?"},
        ]


def test_responses_api_structured_output(stack, fake):
    fake.script_arbiter('{"answer": 4, "reason": "arithmetic"}')
    out = chat(stack, "council", use_responses_api=True).with_structured_output(Answer).invoke("What is 2+2?")
    assert out == Answer(answer=4, reason="arithmetic")
    for r in fake.member_requests():
        assert r["body"]["response_format"]["type"] == "json_schema"
