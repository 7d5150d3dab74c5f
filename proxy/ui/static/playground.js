// The playground: posts {consortium, message} to /ui/playground/chat (same
// origin, the session cookie), and reads the consortium's stream: each
// member's answer as its consortium.member event lands, the judges'
// rankings, then the synthesis as it streams. Every model output is set as
// text (textContent), never as HTML.
"use strict";
(function () {
  const form = document.getElementById("playground");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  function member(m) {
    const card = el("article", "member " + m.status);
    card.dataset.model = m.model + "#" + m.instance;
    const head = el("header");
    head.append(el("strong", "", m.model + "#" + m.instance), " ", el("span", "label", "round " + m.round), " ", el("span", "status " + m.status, m.status));
    card.append(head, el("p", "meta", m.latency_ms + " ms" + (m.fallback ? " · answered by fallback " + m.fallback : "")));
    if (m.error) card.append(el("p", "error", m.error));
    if (m.content) card.append(el("pre", "answer", m.content));
    $("members").append(card);
  }

  function judge(j) {
    const p = el("p", "meta judge");
    p.textContent = "judge " + j.model + ": " + (j.error ? j.error : j.ranking.join(" > "));
    $("judges").append(p);
  }

  function round(r) {
    const conf = r.confidence == null ? "unknown" : Math.round(r.confidence * 100) + "%";
    $("state").textContent = "round " + r.round + " decided, confidence " + conf + (r.iterate ? "; another round follows" : "");
  }

  function frame(name, data) {
    if (name === "consortium.member") return member(JSON.parse(data));
    if (name === "consortium.judge") return judge(JSON.parse(data));
    if (name === "consortium.round") return round(JSON.parse(data));
    if (data === "[DONE]") return;
    const f = JSON.parse(data);
    if (f.error) {
      $("state").textContent = "failed: " + f.error.message;
      return;
    }
    for (const c of f.choices || []) {
      if (c.index === 0 && c.delta && c.delta.content) {
        if (!$("synthesis").dataset.started) {
          $("synthesis").dataset.started = "1";
          $("state").textContent = "the synthesis is streaming";
        }
        $("synthesis").textContent += c.delta.content;
      }
    }
    if (f.consortium && f.consortium.run_id) {
      const a = el("a", "", "Open run " + f.consortium.run_id);
      a.href = "/ui/runs/" + encodeURIComponent(f.consortium.run_id);
      a.id = "runpage";
      $("runlink").replaceChildren(a);
      $("state").textContent = "done";
    }
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("members").replaceChildren();
    $("judges").replaceChildren();
    $("synthesis").textContent = "";
    delete $("synthesis").dataset.started;
    $("runlink").replaceChildren();
    $("send").disabled = true;
    $("state").textContent = "the members are working";
    try {
      const resp = await fetch("/ui/playground/chat", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ consortium: $("consortium").value, message: $("message").value }),
      });
      if (!resp.ok) {
        $("state").textContent = "refused: " + resp.status + " " + (await resp.text());
        return;
      }
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let name = "", data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length) frame(name, data.join("\n"));
        }
      }
    } catch (e) {
      $("state").textContent = "failed: " + e;
    } finally {
      $("send").disabled = false;
    }
  });
})();
