"""The strategies from the real clients: the rank consortium "best" with
n: 2, and the cascade "tiered" (see CONFIG in conftest.py).

"best"'s judges are not scripted: the fake echoes their prompt, which the
consortium's judge_prompt makes a critique and a ranking computed from the
answers under each judge's own shuffled labels, so the winner is known
whatever order each judge saw."""

import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from openai import OpenAI

from conftest import QUICK_ARBITER, RANK_ANSWERS, arbiter_reply

QUESTION = "What is the capital of Australia?"


@pytest.fixture
def client(stack):
    return OpenAI(base_url=stack.base_url, api_key=stack.key, max_retries=0, timeout=30)


def script_rank(fake):
    """Script "best"'s members: fake/m1's two instances answer the best and
    the worst answer (in either order), fake/m2 the second."""
    best, second, third = RANK_ANSWERS
    fake.script("m1", {"content": third}, {"content": best})
    fake.script("m2", {"content": second})


def check_rank(stack, fake, extra):
    """Checks the consortium object of a "best" run, its run record and what
    the judges were sent."""
    assert extra["strategy"] == "rank"
    scores = extra["scores"]
    assert [s["place"] for s in scores] == [1, 2, 3]
    assert [s["model"] for s in scores] == ["fake/m1", "fake/m2", "fake/m1"]
    assert sorted(s["instance"] for s in scores if s["model"] == "fake/m1") == [1, 2]
    # Both judges agree: normalized Borda gives 1, 1/2 and 0.
    assert [s["score"] for s in scores] == pytest.approx([1, 0.5, 0])
    assert extra["confidence"] == pytest.approx(1)
    assert sorted((m["model"], m["status"]) for m in extra["members"]) == [
        ("fake/m1", "ok"), ("fake/m1", "ok"), ("fake/m2", "ok")]
    # Each judge was called once, with every answer and no model's name.
    for judge in ("judge1", "judge2"):
        [sent] = fake.requests(judge)
        prompt = sent["messages"][-1]["content"]
        assert all(a in prompt for a in RANK_ANSWERS)
        assert "fake/m" not in prompt
    run = stack.run(extra["run_id"])
    [rnd] = run["rounds"]
    judges = rnd["judges"]
    assert sorted(j["model"] for j in judges) == ["fake/judge1", "fake/judge2"]
    for j in judges:
        # The first reply counted: its ranking, mapped back to members.
        assert j["reply"].startswith("echo: <critique>") and "rejected" not in j and not j.get("retries")
        assert len(j["ranking"]) == 3
        assert [m.split("#")[0] for m in j["ranked_members"]] == ["fake/m1", "fake/m2", "fake/m1"]


def test_rank_n2_json(client, stack, fake):
    script_rank(fake)
    reply = client.chat.completions.create(
        model="best", n=2, messages=[{"role": "user", "content": QUESTION}])
    assert reply.model == "best"
    assert [c.index for c in reply.choices] == [0, 1]
    assert [c.message.content for c in reply.choices] == list(RANK_ANSWERS[:2])
    assert all(c.finish_reason == "stop" for c in reply.choices)
    # usage sums the three members and the two judges.
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    judged = sum(len(fake.requests(j)[0]["messages"][-1]["content"].split()) for j in ("judge1", "judge2"))
    assert reply.usage.prompt_tokens > judged
    check_rank(stack, fake, reply.model_extra["consortium"])


def test_rank_n2_stream(client, stack, fake):
    script_rank(fake)
    stream = client.chat.completions.create(
        model="best", n=2, messages=[{"role": "user", "content": QUESTION}],
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.model == "best" for c in chunks)
    # A role chunk for each choice first.
    assert [(c.choices[0].index, c.choices[0].delta.role) for c in chunks[:2]] == [(0, "assistant"), (1, "assistant")]
    text, finish = {0: "", 1: ""}, {}
    for c in chunks:
        for choice in c.choices:
            text[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                assert choice.index not in finish
                finish[choice.index] = choice.finish_reason
    assert text == {0: RANK_ANSWERS[0], 1: RANK_ANSWERS[1]}
    assert finish == {0: "stop", 1: "stop"}
    # The consortium object rides on the last finish chunk, then usage.
    [last_finish] = [c for c in chunks if c.choices and c.choices[0].finish_reason and c.choices[0].index == 1]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    check_rank(stack, fake, last_finish.model_extra["consortium"])


def script_cascade(fake):
    """Script "tiered": "quick"'s arbiter is unsure (0.3 < escalate_below
    0.8), "council"'s is sure."""
    fake.script(QUICK_ARBITER, {"content": arbiter_reply("A cheap guess.", confidence="0.3")})
    fake.script_arbiter("The careful answer.")


def check_cascade(fake, extra):
    assert extra["strategy"] == "cascade"
    assert extra["tiers"] == [
        {"tier": "quick", "confidence": pytest.approx(0.3), "escalated": True},
        {"tier": "council", "confidence": pytest.approx(0.95), "escalated": False},
    ]
    assert extra["confidence"] == pytest.approx(0.95)
    # Both tiers ran: quick's member and arbiter, then council's.
    assert len(fake.requests(QUICK_ARBITER)) == 1 and len(fake.requests("arbiter")) == 1
    assert sorted(r["model"] for r in fake.requests() if r["model"] in ("m1", "m2")) == ["m1", "m1", "m2", "m2"]


def test_cascade_json(client, fake):
    script_cascade(fake)
    reply = client.chat.completions.create(model="tiered", messages=[{"role": "user", "content": QUESTION}])
    assert reply.model == "tiered"
    assert [c.message.content for c in reply.choices] == ["The careful answer."]
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens > 0
    check_cascade(fake, reply.model_extra["consortium"])


def test_cascade_stream(client, fake):
    script_cascade(fake)
    chunks = list(client.chat.completions.create(
        model="tiered", messages=[{"role": "user", "content": QUESTION}],
        stream=True, stream_options={"include_usage": True}))
    # Only the escalated tier's answer is streamed; quick's is never sent.
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The careful answer."
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    check_cascade(fake, final[0].model_extra["consortium"])


def chat(stack, model, **kwargs):
    return ChatOpenAI(model=model, base_url=stack.base_url, api_key=stack.key, max_retries=0, timeout=30, **kwargs)


def test_langchain_rank_n2(stack, fake):
    script_rank(fake)
    result = chat(stack, "best", n=2).generate([[HumanMessage(QUESTION)]])
    [generations] = result.generations
    assert [g.message.content for g in generations] == list(RANK_ANSWERS[:2])
    assert result.llm_output["token_usage"]["total_tokens"] > 0


def test_langchain_cascade_stream(stack, fake):
    script_cascade(fake)
    chunks = list(chat(stack, "tiered", stream_usage=True).stream(QUESTION))
    assert "".join(c.content for c in chunks) == "The careful answer."
    assert [c.usage_metadata for c in chunks if c.usage_metadata][-1]["total_tokens"] > 0
