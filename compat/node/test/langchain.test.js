// LangChain.js's ChatOpenAI (@langchain/openai) against the proxy.

import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";

import { AIMessage, HumanMessage, SystemMessage } from "@langchain/core/messages";
import { ChatOpenAI } from "@langchain/openai";
import { z } from "zod";

import { startStack } from "./harness.js";

let stack;
before(async () => {
  stack = await startStack();
});
after(() => stack?.stop());
beforeEach(() => stack.fake.reset());

const chat = (model, options = {}) =>
  new ChatOpenAI({ model, apiKey: stack.key, configuration: { baseURL: stack.baseURL }, maxRetries: 0, timeout: 30_000, ...options });

for (const model of ["council", "fake/m1"]) {
  test(`invoke ${model}`, async () => {
    await stack.fake.scriptArbiter("The consortium's answer.");
    await stack.fake.script("m1", { content: "The consortium's answer." });
    const reply = await chat(model).invoke([new SystemMessage("Be brief."), new HumanMessage("Answer me")]);
    assert.ok(reply instanceof AIMessage);
    assert.equal(reply.content, "The consortium's answer.");
    assert.ok(reply.usage_metadata.total_tokens > 0);
    if (model === "council") {
      const members = await stack.fake.memberRequests();
      assert.equal(members.length, 3);
      for (const r of members) {
        assert.deepEqual(r.messages[0], { role: "system", content: "Be brief." });
        assert.deepEqual(r.messages.at(-1), { role: "user", content: "Answer me" });
      }
    }
  });
}

for (const model of ["council", "fake/m2"]) {
  test(`stream ${model}`, async () => {
    await stack.fake.scriptArbiter("Streamed through LangChain.js.");
    await stack.fake.script("m2", { content: "Streamed through LangChain.js." });
    const chunks = [];
    for await (const chunk of await chat(model, { streamUsage: true }).stream("Stream it")) chunks.push(chunk);
    assert.ok(chunks.length > 2);
    assert.equal(chunks.map((c) => c.content).join(""), "Streamed through LangChain.js.");
    const usage = chunks.filter((c) => c.usage_metadata).map((c) => c.usage_metadata);
    assert.ok(usage.length > 0 && usage.at(-1).total_tokens > 0);
  });
}

test("history: the transcript continues the conversation", async () => {
  await stack.fake.scriptArbiter("It is 4.", "It is 6.");
  const llm = chat("council");
  const history = [new HumanMessage("What is 2+2?")];
  const first = await llm.invoke(history);
  history.push(first, new HumanMessage("And 3+3?"));
  const second = await llm.invoke(history);
  assert.equal(second.content, "It is 6.");
  for (const r of (await stack.fake.memberRequests()).slice(-3)) {
    assert.deepEqual(r.messages, [
      { role: "user", content: "What is 2+2?" },
      { role: "assistant", content: "It is 4." },
      { role: "user", content: "And 3+3?" },
    ]);
  }
  // The responses' ids are the runs' (chatcmpl-run_...): both runs belong
  // to one conversation.
  const runs = await Promise.all([first, second].map((m) => stack.run(m.id.replace(/^chatcmpl-/, ""))));
  assert.ok(runs[0].conversation_id);
  assert.equal(runs[0].conversation_id, runs[1].conversation_id);
});

test("withStructuredOutput", async () => {
  await stack.fake.scriptArbiter('{"answer": 4, "reason": "arithmetic"}');
  const out = await chat("council")
    .withStructuredOutput(z.object({ answer: z.number(), reason: z.string() }))
    .invoke("What is 2+2?");
  assert.deepEqual(out, { answer: 4, reason: "arithmetic" });
  for (const r of await stack.fake.memberRequests()) assert.equal(r.body.response_format.type, "json_schema");
});

test("an error after the stream began is thrown with the proxy's message", async () => {
  await stack.fake.script("m1", { status: 500, error: "member exploded" });
  await stack.fake.script("m2", { status: 500, error: "member exploded" });
  await assert.rejects(
    (async () => {
      for await (const _ of await chat("council").stream("hi"));
    })(),
    /too few member answers/,
  );
});
