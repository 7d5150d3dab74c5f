// The Responses API (POST /v1/responses) from Node.js: openai-node's
// client.responses, and the Vercel AI SDK's @ai-sdk/openai provider, whose
// default model (openai("council")) calls the Responses API.

import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";

import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, streamText } from "ai";
import OpenAI from "openai";
import { z } from "zod";

import { COUNCIL_MEMBERS, startDemo, startStack, streamAll } from "./harness.js";

let stack;
let client;
let provider;
before(async () => {
  stack = await startStack();
  client = new OpenAI({ baseURL: stack.baseURL, apiKey: stack.key, maxRetries: 0, timeout: 30_000 });
  provider = createOpenAI({ baseURL: stack.baseURL, apiKey: stack.key });
});
after(() => stack?.stop());
beforeEach(() => stack.fake.reset());

const memberCount = Object.values(COUNCIL_MEMBERS).reduce((a, b) => a + b, 0);

for (const model of ["council", "fake/m2"]) {
  test(`openai-node responses.create streamed ${model}`, async () => {
    await stack.fake.scriptArbiter("A streamed synthesis, word by word.");
    await stack.fake.script("m2", { content: "A streamed synthesis, word by word." });
    const stream = await client.responses.create({
      model,
      instructions: "Be brief.",
      input: "Stream it",
      stream: true,
    });
    const events = [];
    for await (const event of stream) events.push(event);
    const types = events.map((e) => e.type);
    assert.deepEqual(types.slice(0, 4), [
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
    ]);
    assert.deepEqual(types.slice(-4), [
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    const deltas = events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta);
    assert.ok(deltas.length > 1);
    assert.equal(deltas.join(""), "A streamed synthesis, word by word.");
    const seq = events.map((e) => e.sequence_number);
    assert.deepEqual(seq, [...seq].sort((a, b) => a - b));
    assert.equal(new Set(seq).size, seq.length);
    const done = events.at(-1).response;
    assert.equal(done.status, "completed");
    assert.match(done.id, /^resp_/);
    assert.equal(done.output[0].content[0].text, "A streamed synthesis, word by word.");
    assert.ok(done.usage.total_tokens > 0);
    const sent = model === "council" ? await stack.fake.memberRequests() : await stack.fake.requests("m2");
    assert.equal(sent.length, model === "council" ? memberCount : 1);
    for (const r of sent) {
      assert.deepEqual(r.messages, [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Stream it" },
      ]);
    }
  });
}

test("openai-node responses.create then previous_response_id", async () => {
  await stack.fake.scriptArbiter("Paris.", "About two million people.");
  const first = await client.responses.create({ model: "council", input: "Capital of France?" });
  assert.equal(first.output_text, "Paris.");
  const second = await client.responses.create({
    model: "council",
    input: "How many people live there?",
    previous_response_id: first.id,
  });
  assert.equal(second.output_text, "About two million people.");
  for (const r of (await stack.fake.memberRequests()).slice(-memberCount)) {
    assert.deepEqual(r.messages, [
      { role: "user", content: "Capital of France?" },
      { role: "assistant", content: "Paris." },
      { role: "user", content: "How many people live there?" },
    ]);
  }
});

for (const model of ["council", "fake/m1"]) {
  test(`AI SDK @ai-sdk/openai streamText ${model}`, async () => {
    await stack.fake.scriptArbiter("Streamed for the AI SDK's Responses provider.");
    await stack.fake.script("m1", { content: "Streamed for the AI SDK's Responses provider." });
    const { result, parts, errors } = await streamAll(streamText, {
      model: provider(model),
      system: "Be brief.",
      prompt: "Stream something",
    });
    assert.deepEqual(errors, []);
    assert.ok(parts.length > 1);
    assert.equal(parts.join(""), "Streamed for the AI SDK's Responses provider.");
    assert.equal(await result.finishReason, "stop");
    const usage = await result.usage;
    assert.ok(usage.totalTokens > 0, `usage ${JSON.stringify(usage)}`);
    const metadata = await result.providerMetadata;
    assert.match(metadata.openai.responseId, /^resp_/);
    const sent = model === "council" ? await stack.fake.memberRequests() : await stack.fake.requests("m1");
    assert.equal(sent.length, model === "council" ? memberCount : 1);
    for (const r of sent) {
      assert.equal(r.path, "/v1/chat/completions");
      assert.deepEqual(r.messages, [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Stream something" },
      ]);
    }
  });
}

test("AI SDK @ai-sdk/openai generateObject", async () => {
  await stack.fake.scriptArbiter('{"answer": 4, "reason": "arithmetic"}');
  const { object } = await generateObject({
    model: provider("council"),
    schema: z.object({ answer: z.number(), reason: z.string() }),
    prompt: "2+2?",
    maxRetries: 0,
  });
  assert.deepEqual(object, { answer: 4, reason: "arithmetic" });
  const members = await stack.fake.memberRequests();
  assert.equal(members.length, memberCount);
  for (const r of members) assert.equal(r.body.response_format.type, "json_schema");
});

test("AI SDK @ai-sdk/openai streamText reports an error after the stream began", async () => {
  await stack.fake.script("m1", { status: 500, error: "member exploded" });
  await stack.fake.script("m2", { status: 500, error: "member exploded" });
  const { result, parts, errors } = await streamAll(streamText, { model: provider("council"), prompt: "hi" });
  assert.equal(parts.join(""), "");
  assert.equal(await result.finishReason, "error");
  assert.ok(errors.length >= 1);
  assert.match(String(errors[0].message ?? errors[0]), /too few member answers/);
});

// With store (the default), the AI SDK resends its earlier answers as
// {"type": "item_reference", "id": "msg_..."}: the proxy resolves them from
// the stored responses. With store: false it resends their text.
for (const store of [true, false]) {
  test(`AI SDK @ai-sdk/openai generateText, the conversation resent, store ${store}`, async () => {
    await stack.fake.scriptArbiter("It is 4.", "It is 6.");
    const providerOptions = { openai: { store } };
    const messages = [{ role: "user", content: "What is 2+2?" }];
    const first = await generateText({ model: provider("council"), messages, providerOptions, maxRetries: 0 });
    assert.equal(first.text, "It is 4.");
    messages.push(...first.response.messages, { role: "user", content: "And 3+3?" });
    const second = await generateText({ model: provider("council"), messages, providerOptions, maxRetries: 0 });
    assert.equal(second.text, "It is 6.");
    for (const r of (await stack.fake.memberRequests()).slice(-memberCount)) {
      assert.deepEqual(r.messages, [
        { role: "user", content: "What is 2+2?" },
        { role: "assistant", content: "It is 4." },
        { role: "user", content: "And 3+3?" },
      ]);
    }
  });
}

// Both clients against `consortium serve --demo`, the consortium "demo" as
// the model: the canned demo answer comes back.
test("openai-node and the AI SDK against serve --demo", async () => {
  const demo = await startDemo();
  try {
    const demoClient = new OpenAI({ baseURL: demo.baseURL, apiKey: "demo-key", maxRetries: 0, timeout: 60_000 });
    const stream = await demoClient.responses.create({ model: "demo", input: "What is a consortium?", stream: true });
    let text = "";
    for await (const event of stream) if (event.type === "response.output_text.delta") text += event.delta;
    assert.ok(text.trim(), "an answer");
    const demoProvider = createOpenAI({ baseURL: demo.baseURL, apiKey: "demo-key" });
    const { result, parts, errors } = await streamAll(streamText, { model: demoProvider("demo"), prompt: "What is a consortium?" });
    assert.deepEqual(errors, []);
    assert.ok(parts.join("").trim(), `an answer; log:\n${demo.logs()}`);
    assert.equal(await result.finishReason, "stop");
  } finally {
    await demo.stop();
  }
});
