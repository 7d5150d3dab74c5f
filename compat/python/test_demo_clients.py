"""The Responses API and Messages API clients against `consortium serve
--demo`, as the README's quickstart runs it, with the consortium "demo" as
the model: the canned demo answers come back through each client."""

import asyncio

import anthropic
from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI, OpenAI

# The demo has no client keys: any key is accepted.
KEY = "demo-key"


def test_openai_responses(demo):
    client = OpenAI(base_url=demo.url, api_key=KEY, max_retries=0, timeout=60)
    resp = client.responses.create(model="demo", input="What is a consortium?")
    assert resp.status == "completed" and resp.output_text.strip()
    assert resp.model_extra["consortium"]["run_id"].startswith("run_")
    deltas = [e.delta for e in client.responses.create(model="demo", input="And a second answer?", stream=True,
                                                       previous_response_id=resp.id)
              if e.type == "response.output_text.delta"]
    assert "".join(deltas).strip()


def test_agents_sdk(demo):
    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=demo.url, api_key=KEY, max_retries=0, timeout=60)
    agent = Agent(name="Assistant", instructions="Be brief.", model=OpenAIResponsesModel("demo", client))
    result = asyncio.run(Runner.run(agent, "What is a consortium?"))
    assert isinstance(result.final_output, str) and result.final_output.strip()


def test_langchain_responses_api(demo):
    llm = ChatOpenAI(model="demo", base_url=demo.url, api_key=KEY, max_retries=0, timeout=60, use_responses_api=True)
    assert llm.invoke("What is a consortium?").text.strip()


def test_anthropic_sdk(demo):
    client = anthropic.Anthropic(base_url=demo.url.removesuffix("/v1"), api_key=KEY, max_retries=0, timeout=60)
    msg = client.messages.create(model="demo", max_tokens=500, messages=[{"role": "user", "content": "What is a consortium?"}])
    assert msg.content[0].text.strip() and msg.stop_reason in ("end_turn", "max_tokens")
    with client.messages.stream(model="demo", max_tokens=500,
                                messages=[{"role": "user", "content": "What is a consortium?"}]) as stream:
        assert "".join(stream.text_stream).strip()
