// Members slower than the proxy's 10 s keep-alive interval: every client's
// SSE parser must skip the ": keep-alive" comments the proxy sends while
// they work. The three clients run at once, so the suite waits only once.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { ChatOpenAI } from "@langchain/openai";
import { streamText } from "ai";
import OpenAI from "openai";

import { startStack } from "./harness.js";

let stack;
before(async () => {
  stack = await startStack();
});
after(() => stack?.stop());

test("slow members: openai-node, LangChain.js and the AI SDK all stream through keep-alives", async () => {
  await stack.fake.script("m1", { content: "slow", delay: "10500ms" });
  await stack.fake.script("m2", { content: "slow", delay: "10500ms" });
  await stack.fake.scriptArbiter("Worth the wait.");
  const start = Date.now();

  const viaOpenAI = async () => {
    const client = new OpenAI({ baseURL: stack.baseURL, apiKey: stack.key, maxRetries: 0, timeout: 60_000 });
    const stream = await client.chat.completions.create({ model: "council", messages: [{ role: "user", content: "slow 1" }], stream: true });
    let text = "";
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
    return text;
  };
  const viaLangChain = async () => {
    const llm = new ChatOpenAI({ model: "council", apiKey: stack.key, configuration: { baseURL: stack.baseURL }, maxRetries: 0 });
    let text = "";
    for await (const c of await llm.stream("slow 2")) text += c.content;
    return text;
  };
  const viaAISDK = async () => {
    const provider = createOpenAICompatible({ name: "consortium", baseURL: stack.baseURL, apiKey: stack.key });
    const result = streamText({ model: provider("council"), prompt: "slow 3", maxRetries: 0 });
    let text = "";
    for await (const part of result.textStream) text += part;
    return text;
  };

  const texts = await Promise.all([viaOpenAI(), viaLangChain(), viaAISDK()]);
  assert.ok(Date.now() - start >= 10_000);
  assert.deepEqual(texts, ["Worth the wait.", "Worth the wait.", "Worth the wait."]);
});
