// openai-node against the proxy: a consortium and a passthrough model.

import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";

import OpenAI from "openai";

import { COUNCIL_MEMBERS, startStack } from "./harness.js";

let stack;
let client;
before(async () => {
  stack = await startStack();
  client = new OpenAI({ baseURL: stack.baseURL, apiKey: stack.key, maxRetries: 0, timeout: 30_000 });
});
after(() => stack?.stop());
beforeEach(() => stack.fake.reset());

test("passthrough JSON", async () => {
  await stack.fake.script("m1", { content: "hello from m1" });
  const reply = await client.chat.completions.create({
    model: "fake/m1",
    messages: [
      { role: "system", content: "be brief" },
      { role: "user", content: "hi" },
    ],
  });
  assert.equal(reply.choices[0].message.content, "hello from m1");
  assert.ok(reply.usage.total_tokens > 0);
  const [sent] = await stack.fake.requests("m1");
  assert.deepEqual(sent.header.Authorization, ["Bearer fake-provider-key"]);
});

test("passthrough stream with include_usage", async () => {
  await stack.fake.script("m2", { content: "a streamed passthrough answer" });
  const stream = await client.chat.completions.create({
    model: "fake/m2",
    messages: [{ role: "user", content: "stream please" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let usage;
  for await (const chunk of stream) {
    if (chunk.usage) {
      usage = chunk.usage;
      assert.deepEqual(chunk.choices, []);
    }
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  assert.equal(text, "a streamed passthrough answer");
  assert.ok(usage.total_tokens > 0);
});

test("consortium JSON", async () => {
  await stack.fake.scriptArbiter("Four, the members agree.");
  const reply = await client.chat.completions.create({
    model: "council",
    messages: [{ role: "user", content: "What is two plus two?" }],
  });
  assert.equal(reply.model, "council");
  assert.equal(reply.choices[0].message.content, "Four, the members agree.");
  assert.equal(reply.choices[0].finish_reason, "stop");
  assert.ok(reply.usage.total_tokens > 0);
  assert.equal(reply.consortium.members.length, Object.values(COUNCIL_MEMBERS).reduce((a, b) => a + b));
  const members = await stack.fake.memberRequests();
  assert.deepEqual(members.map((r) => r.model).sort(), ["m1", "m2", "m2"]);
});

test("consortium stream with include_usage", async () => {
  await stack.fake.scriptArbiter("A streamed synthesis, word by word.");
  const stream = await client.chat.completions.create({
    model: "council",
    messages: [{ role: "user", content: "Stream the answer" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(chunks[0].choices[0].delta.role, "assistant");
  assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""), "A streamed synthesis, word by word.");
  const final = chunks.filter((c) => c.choices[0]?.finish_reason);
  assert.equal(final.length, 1);
  assert.match(final[0].consortium.run_id, /^run_/);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.ok(last.usage.total_tokens > 0);
});

test("consortium stream with the stream helper", async () => {
  await stack.fake.scriptArbiter("Through the helper.");
  const stream = client.chat.completions.stream({
    model: "council",
    messages: [{ role: "user", content: "hi" }],
    stream_options: { include_usage: true },
  });
  const done = await stream.finalChatCompletion();
  assert.equal(done.choices[0].message.content, "Through the helper.");
  assert.ok(done.usage.total_tokens > 0);
});

test("an error after the stream began raises APIError with the proxy's message", async () => {
  await stack.fake.script("m1", { status: 500, error: "member one exploded" });
  await stack.fake.script("m2", { status: 500, error: "member two exploded" });
  const stream = await client.chat.completions.create({
    model: "council",
    messages: [{ role: "user", content: "hi" }],
    stream: true,
  });
  await assert.rejects(
    (async () => {
      for await (const _ of stream);
    })(),
    (err) => {
      assert.ok(err instanceof OpenAI.APIError, `got ${err}`);
      assert.match(err.message, /too few member answers.*member one exploded/);
      return true;
    },
  );
});

test("structured output: parse with a JSON schema", async () => {
  await stack.fake.scriptArbiter('{"answer": 4, "reason": "arithmetic"}');
  const schema = {
    type: "object",
    properties: { answer: { type: "integer" }, reason: { type: "string" } },
    required: ["answer", "reason"],
    additionalProperties: false,
  };
  const reply = await client.chat.completions.parse({
    model: "council",
    messages: [{ role: "user", content: "2+2?" }],
    response_format: { type: "json_schema", json_schema: { name: "Answer", strict: true, schema } },
  });
  assert.deepEqual(reply.choices[0].message.parsed, { answer: 4, reason: "arithmetic" });
  for (const r of await stack.fake.memberRequests()) assert.equal(r.body.response_format.json_schema.name, "Answer");
});

test("a key over its rpm raises RateLimitError with Retry-After", async () => {
  const limited = new OpenAI({ baseURL: stack.baseURL, apiKey: "limited-key", maxRetries: 0 });
  await stack.fake.script("m1", { content: "once" });
  const body = { model: "fake/m1", messages: [{ role: "user", content: "hi" }] };
  await limited.chat.completions.create(body);
  await assert.rejects(limited.chat.completions.create(body), (err) => {
    assert.ok(err instanceof OpenAI.RateLimitError, `got ${err}`);
    assert.ok(Number(err.headers.get("retry-after")) > 0);
    return true;
  });
});

test("conversation header continuation", async () => {
  await stack.fake.scriptArbiter("Paris.", "About two million people.");
  const { data: first, response } = await client.chat.completions
    .create({ model: "council", messages: [{ role: "user", content: "Capital of France?" }] })
    .withResponse();
  const conversation = response.headers.get("x-consortium-conversation");
  assert.equal(first.consortium.conversation_id, conversation);
  await stack.fake.reset();
  await stack.fake.scriptArbiter("About two million people.");
  const second = await client.chat.completions.create(
    { model: "council", messages: [{ role: "user", content: "How many people live there?" }] },
    { headers: { "X-Consortium-Conversation": conversation } },
  );
  assert.equal(second.choices[0].message.content, "About two million people.");
  for (const r of await stack.fake.memberRequests()) {
    assert.deepEqual(r.messages, [
      { role: "user", content: "Capital of France?" },
      { role: "assistant", content: "Paris." },
      { role: "user", content: "How many people live there?" },
    ]);
  }
});

test("models.list and retrieve", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ["council", "best", "quick", "tiered", "fake/m1", "fake/m2", "fake/emb"]);
  const m = await client.models.retrieve("fake/m2");
  assert.equal(m.id, "fake/m2");
  for (const name of ["council", "best", "tiered"]) {
    assert.equal((await client.models.retrieve(name)).owned_by, "consortium");
  }
});

test("embeddings", async () => {
  const out = await client.embeddings.create({ model: "fake/emb", input: ["one", "two"] });
  assert.equal(out.data.length, 2);
  assert.equal(out.data[0].embedding.length, 8);
});

test("unknown model raises NotFoundError with the proxy's message", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "nope/model", messages: [{ role: "user", content: "hi" }] }),
    (err) => {
      assert.ok(err instanceof OpenAI.NotFoundError, `got ${err}`);
      assert.equal(err.status, 404);
      assert.equal(err.code, "model_not_found");
      assert.match(err.message, /nope\/model/);
      return true;
    },
  );
  await assert.rejects(client.models.retrieve("nope/model"), OpenAI.NotFoundError);
});

test("a wrong key raises AuthenticationError with the proxy's message", async () => {
  const bad = new OpenAI({ baseURL: stack.baseURL, apiKey: "wrong-key", maxRetries: 0 });
  await assert.rejects(
    bad.chat.completions.create({ model: "council", messages: [{ role: "user", content: "hi" }] }),
    (err) => {
      assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err}`);
      assert.equal(err.status, 401);
      assert.match(err.message, /Incorrect API key provided\./);
      return true;
    },
  );
  assert.deepEqual(await stack.fake.requests(), []);
});

test("a provider's 400 keeps its status and message", async () => {
  await stack.fake.script("m1", { status: 400, error: "max_tokens is too large for this model" });
  await assert.rejects(
    client.chat.completions.create({ model: "fake/m1", messages: [{ role: "user", content: "hi" }] }),
    (err) => err instanceof OpenAI.BadRequestError && /max_tokens is too large/.test(err.message),
  );
});
