"""The `llm` CLI against the proxy, configured as README.md tells users to:
a consortium in extra-openai-models.yaml, then `llm -m NAME` and `llm -c`."""

import json
import os
import re
import subprocess

import pytest

from conftest import REPO, clean_env

README_BASE = "http://127.0.0.1:8080/v1"


def readme_llm_yaml():
    """The extra-openai-models.yaml block of README.md."""
    with open(os.path.join(REPO, "README.md")) as f:
        blocks = re.findall(r"```yaml\n(.*?)```", f.read(), re.S)
    found = [b for b in blocks if "model_id:" in b]
    assert len(found) == 1, "README.md should have one extra-openai-models.yaml block"
    return found[0]


@pytest.fixture
def llm(stack, llm_bin, tmp_path):
    """Runs llm with an LLM_USER_PATH of its own, holding the README's
    extra-openai-models.yaml (pointed at this proxy) and the client key."""
    models = readme_llm_yaml().replace(README_BASE, stack.base_url)
    assert stack.base_url in models
    # A passthrough model too, as a user would add one.
    models += f"""
- model_id: fake-m1
  model_name: fake/m1
  api_base: {stack.base_url}
  api_key_name: consortium
- model_id: missing
  model_name: fake-typo/m1
  api_base: {stack.base_url}
  api_key_name: consortium
"""
    (tmp_path / "extra-openai-models.yaml").write_text(models)
    env = clean_env(LLM_USER_PATH=str(tmp_path))

    def run(*args, ok=True):
        out = subprocess.run([llm_bin, *args], env=env, capture_output=True, text=True, timeout=60)
        if not ok:
            assert out.returncode != 0, f"llm {' '.join(args)} succeeded: {out.stdout}"
            return out.stderr
        assert out.returncode == 0, f"llm {' '.join(args)}: {out.stderr}"
        return out.stdout

    run("keys", "set", "consortium", "--value", stack.key)
    return run


def test_consortium_conversation(llm, stack, fake):
    fake.script_arbiter("Two plus two is four.", "Three plus three is six.")
    assert llm("-m", "council", "What is two plus two?").strip() == "Two plus two is four."
    first = fake.member_requests()
    assert sorted(r["model"] for r in first) == ["m1", "m2", "m2"]
    for r in first:
        assert r["messages"] == [{"role": "user", "content": "What is two plus two?"}]

    assert llm("-c", "And three plus three?").strip() == "Three plus three is six."
    # llm resends the history: every member received the first turn and
    # the synthesis the user saw, then the new question.
    second = fake.member_requests()[len(first):]
    assert sorted(r["model"] for r in second) == ["m1", "m2", "m2"]
    for r in second:
        assert r["messages"] == [
            {"role": "user", "content": "What is two plus two?"},
            {"role": "assistant", "content": "Two plus two is four."},
            {"role": "user", "content": "And three plus three?"},
        ]
    # The arbiter saw the conversation too.
    arbiter = fake.requests("arbiter")
    assert len(arbiter) == 2 and "Two plus two is four." in arbiter[1]["messages"][-1]["content"]

    # llm logged both answers with the stream's id, chatcmpl-run_...: the
    # proxy linked the second turn to the first one's conversation by its
    # transcript.
    logs = json.loads(llm("logs", "-n", "2", "--json"))
    assert len(logs) == 2 and logs[0]["conversation_id"] == logs[1]["conversation_id"]
    runs = [stack.run(entry["response_json"]["id"].removeprefix("chatcmpl-")) for entry in logs]
    assert runs[0]["conversation_id"] == runs[1]["conversation_id"] != ""
    # llm streamed both answers, asking for include_usage, and recorded the
    # summed usage from the last chunk.
    assert all(entry["response_json"]["object"] == "chat.completion.chunk" for entry in logs)
    assert all(entry["input_tokens"] and entry["output_tokens"] for entry in logs)


def test_no_stream_and_passthrough(llm, fake):
    fake.script_arbiter("Unstreamed synthesis.")
    assert llm("-m", "council", "--no-stream", "hi").strip() == "Unstreamed synthesis."
    fake.script("m1", {"content": "straight from m1"})
    assert llm("-m", "fake-m1", "hello").strip() == "straight from m1"
    assert llm("-c", "--no-stream", "again").strip() == "straight from m1"
    sent = fake.requests("m1")[-1]
    assert [m["content"] for m in sent["messages"]] == ["hello", "straight from m1", "again"]


def test_json_object_option(llm, fake):
    fake.script_arbiter('```json\n{"answer": 4}\n```')
    assert json.loads(llm("-m", "council", "-o", "json_object", "1", "2+2 as JSON")) == {"answer": 4}
    for r in fake.member_requests():
        assert r["body"]["response_format"] == {"type": "json_object"}


def test_errors_are_printed(llm, fake):
    err = llm("-m", "missing", "hi", ok=False)
    assert "fake-typo/m1" in err and "404" in err
    fake.script("m1", {"status": 500, "error": "member exploded"})
    fake.script("m2", {"status": 500, "error": "member exploded"})
    err = llm("-m", "council", "hi", ok=False)
    assert "too few member answers" in err


def test_models_listed(llm):
    out = llm("models", "list")
    assert "council" in out and "fake-m1" in out
