"""The OpenAI Agents SDK (openai-agents) running an agent whose model is a
consortium: OpenAIResponsesModel over an AsyncOpenAI client at the proxy,
no tools, tracing disabled (the SDK would otherwise export traces to
OpenAI)."""

import asyncio

import pytest
from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI
from pydantic import BaseModel

from conftest import COUNCIL_MEMBERS


@pytest.fixture
def agent(stack):
    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=stack.base_url, api_key=stack.key, max_retries=0, timeout=30)
    return Agent(name="Assistant", instructions="Be brief.", model=OpenAIResponsesModel("council", client))


def test_run(agent, fake):
    fake.script_arbiter("Canberra, the members agree.")
    result = asyncio.run(Runner.run(agent, "Capital of Australia?"))
    assert result.final_output == "Canberra, the members agree."
    assert result.last_response_id.startswith("resp_")
    [raw] = result.raw_responses
    assert raw.usage.total_tokens > 0
    members = fake.member_requests()
    assert len(members) == sum(COUNCIL_MEMBERS.values())
    for r in members:
        assert r["messages"] == [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "Capital of Australia?"}]


def test_run_streamed(agent, fake):
    fake.script_arbiter("Streamed to the agent, word by word.")

    async def run():
        result = Runner.run_streamed(agent, "Stream it")
        deltas = []
        async for event in result.stream_events():
            if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
                deltas.append(event.data.delta)
        return result, deltas

    result, deltas = asyncio.run(run())
    assert len(deltas) > 1
    assert "".join(deltas) == "Streamed to the agent, word by word."
    assert result.final_output == "Streamed to the agent, word by word."


def test_conversation(agent, fake):
    """A second turn by the resent history (to_input_list), a third by
    previous_response_id: the members of the third see every turn."""
    fake.script_arbiter("Paris.", "About two million people.")

    async def three_turns():
        # One event loop for the client's connections.
        first = await Runner.run(agent, "Capital of France?")
        second = await Runner.run(agent, first.to_input_list() + [
            {"role": "user", "content": "How many people live there?"}])
        assert second.final_output == "About two million people."
        fake.reset()
        fake.script_arbiter("The Seine.")
        return await Runner.run(agent, "Which river?", previous_response_id=second.last_response_id)

    third = asyncio.run(three_turns())
    assert third.final_output == "The Seine."
    members = fake.member_requests()
    assert len(members) == sum(COUNCIL_MEMBERS.values())
    for r in members:
        assert r["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "How many people live there?"},
            {"role": "assistant", "content": "About two million people."},
            {"role": "user", "content": "Which river?"},
        ]


class Answer(BaseModel):
    answer: int
    reason: str


def test_output_type(stack, fake):
    """An agent with an output_type asks for a JSON schema (text.format),
    which every member gets as response_format; the SDK parses the
    synthesis."""
    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=stack.base_url, api_key=stack.key, max_retries=0, timeout=30)
    agent = Agent(name="Calculator", model=OpenAIResponsesModel("council", client), output_type=Answer)
    fake.script_arbiter('{"answer": 4, "reason": "arithmetic"}')
    result = asyncio.run(Runner.run(agent, "2+2?"))
    assert result.final_output == Answer(answer=4, reason="arithmetic")
    members = fake.member_requests()
    assert len(members) == sum(COUNCIL_MEMBERS.values())
    for r in members:
        assert r["body"]["response_format"]["type"] == "json_schema"
