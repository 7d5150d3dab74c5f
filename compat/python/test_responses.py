"""openai-python's Responses API (client.responses) against the proxy's
POST /v1/responses: a consortium and a passthrough model."""

import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from conftest import COUNCIL_MEMBERS


@pytest.fixture
def client(stack):
    return OpenAI(base_url=stack.base_url, api_key=stack.key, max_retries=0, timeout=30)


def test_consortium(client, fake):
    fake.script_arbiter("Four, the members agree.")
    resp = client.responses.create(model="council", instructions="Be brief.", input="What is two plus two?")
    assert resp.id.startswith("resp_")
    assert resp.object == "response" and resp.status == "completed"
    assert resp.model == "council"
    assert resp.output_text == "Four, the members agree."
    [item] = resp.output
    assert item.type == "message" and item.role == "assistant"
    assert item.content[0].type == "output_text"
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens > 0
    extra = resp.model_extra["consortium"]
    assert extra["run_id"].startswith("run_")
    assert len(extra["members"]) == sum(COUNCIL_MEMBERS.values())
    members = fake.member_requests()
    assert sorted(r["model"] for r in members) == ["m1", "m2", "m2"]
    for r in members:
        assert r["messages"] == [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "What is two plus two?"}]
    # The stored response is there to read back.
    again = client.responses.retrieve(resp.id)
    assert again.id == resp.id and again.output_text == "Four, the members agree."


def test_passthrough(client, fake):
    fake.script("m1", {"content": "hello from m1"})
    resp = client.responses.create(
        model="fake/m1",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        temperature=0.2,
        max_output_tokens=50,
    )
    assert resp.output_text == "hello from m1"
    assert resp.usage.total_tokens > 0
    # Translated to the provider's chat completions, not forwarded raw.
    [sent] = fake.requests("m1")
    assert sent["path"] == "/v1/chat/completions"
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert sent["body"]["temperature"] == 0.2


@pytest.mark.parametrize("model", ["council", "fake/m2"])
def test_stream(client, fake, model):
    fake.script_arbiter("A streamed synthesis, word by word.")
    fake.script("m2", {"content": "A streamed synthesis, word by word."})
    events = list(client.responses.create(model=model, input="Stream it", stream=True))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1
    assert "".join(deltas) == "A streamed synthesis, word by word."
    seq = [e.sequence_number for e in events]
    assert seq == sorted(seq) and len(set(seq)) == len(seq)
    done = events[-1].response
    assert done.status == "completed"
    assert done.output_text == "A streamed synthesis, word by word."
    assert done.usage.total_tokens > 0
    assert done.id == events[0].response.id


def test_stream_helper(client, fake):
    """responses.stream, the SDK's helper, accumulates the events."""
    fake.script_arbiter("Streamed by the helper.")
    with client.responses.stream(model="council", input="Stream it") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "Streamed by the helper."
    assert final.output_text == "Streamed by the helper."


def test_previous_response_id(client, fake):
    """Three turns chained by previous_response_id: every member of the
    third sees both earlier questions and the syntheses."""
    fake.script_arbiter("Paris.", "About two million people.", "The Seine.")
    first = client.responses.create(model="council", input="Capital of France?")
    second = client.responses.create(model="council", input="How many people live there?",
                                     previous_response_id=first.id)
    assert second.output_text == "About two million people."
    fake.reset()
    fake.script_arbiter("The Seine.")
    third = client.responses.create(model="council", input="Which river?", previous_response_id=second.id)
    assert third.output_text == "The Seine."
    assert len({first.id, second.id, third.id}) == 3
    members = fake.member_requests()
    assert len(members) == sum(COUNCIL_MEMBERS.values())
    for r in members:
        assert r["messages"] == [
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "How many people live there?"},
            {"role": "assistant", "content": "About two million people."},
            {"role": "user", "content": "Which river?"},
        ]
    # The arbiter saw the history too.
    [arbiter] = fake.requests("arbiter")
    assert "Capital of France?" in str(arbiter["messages"])


def test_store_false(client, fake):
    """store=False stores nothing: the response cannot be read back, and a
    later previous_response_id to it is not found."""
    fake.script_arbiter("Not kept.")
    resp = client.responses.create(model="council", input="Forget this", store=False)
    assert resp.output_text == "Not kept."
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    fake.reset()
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="council", input="And then?", previous_response_id=resp.id)
    assert e.value.status_code == 404
    assert fake.requests() == []


def test_delete(client, fake):
    fake.script_arbiter("Deleted soon.")
    resp = client.responses.create(model="council", input="Keep this for a moment")
    client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="council", input="And then?", previous_response_id=resp.id)


class Answer(BaseModel):
    answer: int
    reason: str


ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}, "reason": {"type": "string"}},
    "required": ["answer", "reason"],
    "additionalProperties": False,
}


def test_structured_output(client, fake):
    """text.format json_schema reaches every member as the chat
    completions response_format; responses.parse reads the synthesis."""
    fake.script_arbiter('{"answer": 4, "reason": "arithmetic"}')
    resp = client.responses.create(
        model="council",
        input="2+2?",
        text={"format": {"type": "json_schema", "name": "Answer", "schema": ANSWER_SCHEMA, "strict": True}},
    )
    assert Answer.model_validate_json(resp.output_text) == Answer(answer=4, reason="arithmetic")
    members = fake.member_requests()
    assert len(members) == sum(COUNCIL_MEMBERS.values())
    for r in members:
        fmt = r["body"]["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["name"] == "Answer"
        assert fmt["json_schema"]["schema"]["required"] == ["answer", "reason"]
    fake.reset()
    fake.script_arbiter('{"answer": 6, "reason": "more arithmetic"}')
    parsed = client.responses.parse(model="council", input="3+3?", text_format=Answer)
    assert parsed.output_parsed == Answer(answer=6, reason="more arithmetic")


def test_unknown_model_is_not_found(client, fake):
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="nope/model", input="hi")
    assert "nope/model" in e.value.message
    assert fake.requests() == []


def test_tools_on_a_consortium_are_refused(client, fake):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="council", input="hi", tools=[{
            "type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}])
    assert e.value.status_code == 400
    assert fake.requests() == []
