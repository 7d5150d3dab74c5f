// The Vercel AI SDK (ai, with @ai-sdk/openai-compatible) against the proxy.

import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";

import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, generateText, streamText } from "ai";
import { z } from "zod";

import { startStack, streamAll } from "./harness.js";

// The AI SDK warns on the console that a plain JSON response format carries
// no schema; the test below checks both ways on purpose.
globalThis.AI_SDK_LOG_WARNINGS = false;

let stack;
let provider;
before(async () => {
  stack = await startStack();
  provider = createOpenAICompatible({ name: "consortium", baseURL: stack.baseURL, apiKey: stack.key, includeUsage: true });
});
after(() => stack?.stop());
beforeEach(() => stack.fake.reset());

for (const model of ["council", "fake/m1"]) {
  test(`generateText ${model}`, async () => {
    await stack.fake.scriptArbiter("Generated for the AI SDK.");
    await stack.fake.script("m1", { content: "Generated for the AI SDK." });
    const result = await generateText({
      model: provider(model),
      system: "Be brief.",
      prompt: "Say something",
      maxRetries: 0,
    });
    assert.equal(result.text, "Generated for the AI SDK.");
    assert.equal(result.finishReason, "stop");
    assert.ok(result.usage.totalTokens > 0);
    assert.equal(result.response.modelId, model === "council" ? "council" : "m1");
  });
}

for (const model of ["council", "fake/m2"]) {
  test(`streamText ${model}`, async () => {
    await stack.fake.scriptArbiter("Streamed for the AI SDK, word by word.");
    await stack.fake.script("m2", { content: "Streamed for the AI SDK, word by word." });
    const { result, parts, errors } = await streamAll(streamText, { model: provider(model), prompt: "Stream something" });
    assert.deepEqual(errors, []);
    assert.ok(parts.length > 2);
    assert.equal(parts.join(""), "Streamed for the AI SDK, word by word.");
    assert.equal(await result.finishReason, "stop");
    const usage = await result.usage;
    assert.ok(usage.totalTokens > 0, `usage ${JSON.stringify(usage)}`);
  });
}

test("messages: the transcript continues the conversation", async () => {
  await stack.fake.scriptArbiter("It is 4.", "It is 6.");
  const messages = [{ role: "user", content: "What is 2+2?" }];
  const first = await generateText({ model: provider("council"), messages, maxRetries: 0 });
  messages.push(...first.response.messages, { role: "user", content: "And 3+3?" });
  const second = await generateText({ model: provider("council"), messages, maxRetries: 0 });
  assert.equal(second.text, "It is 6.");
  for (const r of (await stack.fake.memberRequests()).slice(-3)) {
    assert.deepEqual(r.messages, [
      { role: "user", content: "What is 2+2?" },
      { role: "assistant", content: "It is 4." },
      { role: "user", content: "And 3+3?" },
    ]);
  }
  const runs = await Promise.all([first, second].map((r) => stack.run(r.response.id.replace(/^chatcmpl-/, ""))));
  assert.ok(runs[0].conversation_id);
  assert.equal(runs[0].conversation_id, runs[1].conversation_id);
});

test("the conversation header continues a conversation", async () => {
  await stack.fake.scriptArbiter("Paris.", "About two million people.");
  const first = await generateText({ model: provider("council"), prompt: "Capital of France?", maxRetries: 0 });
  const conversation = first.response.headers["x-consortium-conversation"];
  assert.match(conversation, /^conv_/);
  const second = await generateText({
    model: provider("council"),
    prompt: "How many people live there?",
    headers: { "X-Consortium-Conversation": conversation },
    maxRetries: 0,
  });
  assert.equal(second.text, "About two million people.");
  for (const r of (await stack.fake.memberRequests()).slice(-3)) {
    assert.deepEqual(r.messages.map((m) => m.content), ["Capital of France?", "Paris.", "How many people live there?"]);
  }
});

test("an unknown model is an APICallError with the proxy's message", async () => {
  await assert.rejects(
    generateText({ model: provider("nope/model"), prompt: "hi", maxRetries: 0 }),
    (err) => {
      assert.equal(err.statusCode, 404, `got ${err}`);
      assert.match(err.message, /nope\/model/);
      return true;
    },
  );
});

for (const structuredOutputs of [false, true]) {
  test(`generateObject, supportsStructuredOutputs: ${structuredOutputs}`, async () => {
    await stack.fake.scriptArbiter('{"answer": 4, "reason": "arithmetic"}');
    const structured = createOpenAICompatible({
      name: "consortium",
      baseURL: stack.baseURL,
      apiKey: stack.key,
      supportsStructuredOutputs: structuredOutputs,
    });
    const result = await generateObject({
      model: structured("council"),
      schema: z.object({ answer: z.number(), reason: z.string() }),
      prompt: "What is 2+2?",
      maxRetries: 0,
    });
    assert.deepEqual(result.object, { answer: 4, reason: "arithmetic" });
    // Without structuredOutputs the provider asks for a JSON object, with
    // them for the schema; every member gets what the client sent.
    for (const r of await stack.fake.memberRequests()) {
      assert.equal(r.body.response_format.type, structuredOutputs ? "json_schema" : "json_object");
    }
  });
}

test("streamText reports an error after the stream began", async () => {
  await stack.fake.script("m1", { status: 500, error: "member exploded" });
  await stack.fake.script("m2", { status: 500, error: "member exploded" });
  const { result, parts, errors } = await streamAll(streamText, { model: provider("council"), prompt: "hi" });
  assert.equal(parts.join(""), "");
  assert.equal(await result.finishReason, "error");
  assert.equal(errors.length, 1);
  assert.match(errors[0].message, /too few member answers/);
});
