// The strategies from openai-node: the rank consortium "best" with n: 2,
// and the cascade "tiered" (see the configuration in harness.js).
//
// "best"'s judges are not scripted: the fake echoes their prompt, which the
// consortium's judge_prompt makes a critique and a ranking computed from the
// answers under each judge's own shuffled labels, so the winner is known
// whatever order each judge saw.

import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";

import OpenAI from "openai";

import { QUICK_ARBITER, RANK_ANSWERS, arbiterReply, startStack } from "./harness.js";

const QUESTION = "What is the capital of Australia?";

let stack;
let client;
before(async () => {
  stack = await startStack();
  client = new OpenAI({ baseURL: stack.baseURL, apiKey: stack.key, maxRetries: 0, timeout: 30_000 });
});
after(() => stack?.stop());
beforeEach(() => stack.fake.reset());

const near = (got, want) => assert.ok(Math.abs(got - want) < 1e-9, `${got} is not ${want}`);

// scriptRank scripts "best"'s members: fake/m1's two instances answer the
// best and the worst answer (in either order), fake/m2 the second.
async function scriptRank() {
  const [best, second, third] = RANK_ANSWERS;
  await stack.fake.script("m1", { content: third }, { content: best });
  await stack.fake.script("m2", { content: second });
}

// checkRank checks the consortium object of a "best" run, its run record
// and what the judges were sent.
async function checkRank(extra) {
  assert.equal(extra.strategy, "rank");
  const scores = extra.scores;
  assert.deepEqual(scores.map((s) => s.place), [1, 2, 3]);
  assert.deepEqual(scores.map((s) => s.model), ["fake/m1", "fake/m2", "fake/m1"]);
  assert.deepEqual(scores.filter((s) => s.model === "fake/m1").map((s) => s.instance).sort(), [1, 2]);
  // Both judges agree: normalized Borda gives 1, 1/2 and 0.
  scores.forEach((s, i) => near(s.score, [1, 0.5, 0][i]));
  near(extra.confidence, 1);
  assert.deepEqual(extra.members.map((m) => `${m.model} ${m.status}`).sort(), ["fake/m1 ok", "fake/m1 ok", "fake/m2 ok"]);
  // Each judge was called once, with every answer and no model's name.
  for (const judge of ["judge1", "judge2"]) {
    const [sent] = await stack.fake.requests(judge);
    const prompt = sent.messages.at(-1).content;
    for (const a of RANK_ANSWERS) assert.ok(prompt.includes(a), `${judge} was not shown ${a}`);
    assert.ok(!prompt.includes("fake/m"));
  }
  const run = await stack.run(extra.run_id);
  const [round] = run.rounds;
  assert.deepEqual(round.judges.map((j) => j.model).sort(), ["fake/judge1", "fake/judge2"]);
  for (const j of round.judges) {
    // The first reply counted: its ranking, mapped back to members.
    assert.ok(j.reply.startsWith("echo: <critique>"));
    assert.equal(j.rejected, undefined);
    assert.ok(!j.retries);
    assert.equal(j.ranking.length, 3);
    assert.deepEqual(j.ranked_members.map((m) => m.split("#")[0]), ["fake/m1", "fake/m2", "fake/m1"]);
  }
}

test("rank with n: 2, JSON", async () => {
  await scriptRank();
  const reply = await client.chat.completions.create({ model: "best", n: 2, messages: [{ role: "user", content: QUESTION }] });
  assert.equal(reply.model, "best");
  assert.deepEqual(reply.choices.map((c) => c.index), [0, 1]);
  assert.deepEqual(reply.choices.map((c) => c.message.content), RANK_ANSWERS.slice(0, 2));
  assert.deepEqual(reply.choices.map((c) => c.finish_reason), ["stop", "stop"]);
  // usage sums the three members and the two judges.
  assert.equal(reply.usage.total_tokens, reply.usage.prompt_tokens + reply.usage.completion_tokens);
  let judged = 0;
  for (const judge of ["judge1", "judge2"]) {
    judged += (await stack.fake.requests(judge))[0].messages.at(-1).content.split(/\s+/).filter(Boolean).length;
  }
  assert.ok(reply.usage.prompt_tokens > judged, `${reply.usage.prompt_tokens} prompt tokens, judges read ${judged}`);
  await checkRank(reply.consortium);
});

test("rank with n: 2, streamed", async () => {
  await scriptRank();
  const stream = await client.chat.completions.create({
    model: "best",
    n: 2,
    messages: [{ role: "user", content: QUESTION }],
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.every((c) => c.model === "best"));
  // A role chunk for each choice first.
  assert.deepEqual(chunks.slice(0, 2).map((c) => [c.choices[0].index, c.choices[0].delta.role]), [[0, "assistant"], [1, "assistant"]]);
  const text = ["", ""];
  const finish = {};
  let extra;
  for (const c of chunks) {
    for (const choice of c.choices) {
      text[choice.index] += choice.delta?.content ?? "";
      if (choice.finish_reason) {
        assert.equal(finish[choice.index], undefined);
        finish[choice.index] = choice.finish_reason;
        // The consortium object rides on the last finish chunk.
        if (choice.index === 1) extra = c.consortium;
      }
    }
  }
  assert.deepEqual(text, RANK_ANSWERS.slice(0, 2));
  assert.deepEqual(finish, { 0: "stop", 1: "stop" });
  assert.deepEqual(chunks.at(-1).choices, []);
  assert.ok(chunks.at(-1).usage.total_tokens > 0);
  await checkRank(extra);
});

// scriptCascade scripts "tiered": "quick"'s arbiter is unsure (0.3 <
// escalate_below 0.8), "council"'s is sure.
async function scriptCascade() {
  await stack.fake.script(QUICK_ARBITER, { content: arbiterReply("A cheap guess.", "0.3") });
  await stack.fake.scriptArbiter("The careful answer.");
}

async function checkCascade(extra) {
  assert.equal(extra.strategy, "cascade");
  assert.deepEqual(extra.tiers.map((t) => [t.tier, t.escalated]), [["quick", true], ["council", false]]);
  near(extra.tiers[0].confidence, 0.3);
  near(extra.tiers[1].confidence, 0.95);
  near(extra.confidence, 0.95);
  // Both tiers ran: quick's member and arbiter, then council's.
  assert.equal((await stack.fake.requests(QUICK_ARBITER)).length, 1);
  assert.equal((await stack.fake.requests("arbiter")).length, 1);
  const members = (await stack.fake.requests()).filter((r) => r.model === "m1" || r.model === "m2");
  assert.deepEqual(members.map((r) => r.model).sort(), ["m1", "m1", "m2", "m2"]);
}

test("cascade, JSON", async () => {
  await scriptCascade();
  const reply = await client.chat.completions.create({ model: "tiered", messages: [{ role: "user", content: QUESTION }] });
  assert.equal(reply.model, "tiered");
  assert.deepEqual(reply.choices.map((c) => c.message.content), ["The careful answer."]);
  assert.equal(reply.choices[0].finish_reason, "stop");
  assert.ok(reply.usage.total_tokens > 0);
  await checkCascade(reply.consortium);
});

test("cascade, streamed", async () => {
  await scriptCascade();
  const stream = await client.chat.completions.create({
    model: "tiered",
    messages: [{ role: "user", content: QUESTION }],
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  // Only the escalated tier's answer is streamed; quick's is never sent.
  assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""), "The careful answer.");
  const final = chunks.filter((c) => c.choices[0]?.finish_reason);
  assert.equal(final.length, 1);
  assert.equal(final[0].choices[0].finish_reason, "stop");
  assert.deepEqual(chunks.at(-1).choices, []);
  assert.ok(chunks.at(-1).usage.total_tokens > 0);
  await checkCascade(final[0].consortium);
});
