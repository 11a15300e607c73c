/* videoqa report: question cards rendered from the embedded JSON, a batch at a time as the reader
   scrolls. Every text from data goes into the page as a text node (never as markup); the filter
   state lives in the URL fragment, so a link points at a view or at one question. */
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const RUNS = DATA.runs;
  const QUESTIONS = DATA.questions;
  const VIDEOS = DATA.videos;
  const SEVERAL = RUNS.length > 1;
  const LETTERS = "ABCDEFGHIJ";
  const BATCH = 20; // cards added per scroll step
  const COLLAPSE_AT = 8; // transcripts longer than this start as a thumbnail strip
  const SAME_TIME_S = 0.05; // captions of different runs this close in time share a row
  const CAPTION_RUNS = RUNS.map((r, i) => i).filter((i) => RUNS[i].answerer !== "video-llm");

  const cards = document.getElementById("cards");
  const more = document.getElementById("more");
  const count = document.getElementById("f-count");
  const boxes = Array.from(document.querySelectorAll('input[name="outcome"]'));
  const runSelect = document.getElementById("f-run");
  const catSelect = document.getElementById("f-cat");
  const textInput = document.getElementById("f-text");
  const disagree = document.getElementById("f-dis");

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(key, String(value));
    }
    for (const child of children || []) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function fmtTime(t) {
    const s = Math.max(0, Number(t) || 0);
    const m = Math.floor(s / 60);
    return m + ":" + (s - 60 * m).toFixed(1).padStart(4, "0");
  }

  // ------------------------------------------------------------------ state <-> URL fragment

  const state = { outcomes: new Set(boxes.map((b) => b.value)), run: "any", cat: "", text: "", dis: false, qid: "" };

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    const o = p.get("o");
    state.outcomes = new Set(o === null ? boxes.map((b) => b.value) : o.split(",").filter(Boolean));
    state.run = p.get("run") || "any";
    state.cat = p.get("cat") || "";
    state.text = p.get("q") || "";
    state.dis = p.get("dis") === "1";
    state.qid = p.get("qid") || "";
    boxes.forEach((b) => (b.checked = state.outcomes.has(b.value)));
    if (runSelect) runSelect.value = state.run;
    if (catSelect) catSelect.value = state.cat;
    if (disagree) disagree.checked = state.dis;
    textInput.value = state.text;
  }

  function hashOf() {
    const p = new URLSearchParams();
    if (state.qid) p.set("qid", state.qid);
    if (state.outcomes.size !== boxes.length) p.set("o", Array.from(state.outcomes).join(","));
    if (state.run !== "any") p.set("run", state.run);
    if (state.cat) p.set("cat", state.cat);
    if (state.text) p.set("q", state.text);
    if (state.dis) p.set("dis", "1");
    return p.toString();
  }

  function writeHash() {
    const hash = hashOf();
    if (location.hash.slice(1) === hash) return;
    try {
      history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
    } catch (e) {
      location.replace("#" + hash); // file:// pages where replaceState is refused
    }
  }

  // ------------------------------------------------------------------ filtering

  const videoText = new Map();
  function searchText(q) {
    if (!videoText.has(q.video)) {
      const v = VIDEOS[q.video];
      const parts = v ? v.runs.flatMap((r) => r.captions.map((c) => c[1])) : [];
      videoText.set(q.video, parts.join("\n").toLowerCase());
    }
    return (q.question + "\n" + q.options.join("\n") + "\n" + q.qid).toLowerCase() + "\n" + videoText.get(q.video);
  }

  function matches(q) {
    if (state.qid) return q.qid === state.qid;
    const results = state.run === "any" ? q.results : [q.results[Number(state.run)]].filter(Boolean);
    if (!results.some((r) => state.outcomes.has(r.outcome))) return false;
    if (state.cat && q.category !== state.cat) return false;
    if (state.dis) {
      const right = q.results.some((r) => r.outcome === "correct");
      const wrong = q.results.some((r) => ["wrong", "invalid", "failed"].includes(r.outcome));
      if (!(right && wrong)) return false;
    }
    return !state.text || searchText(q).includes(state.text.toLowerCase());
  }

  // ------------------------------------------------------------------ cards

  function thumb(src, t) {
    const img = el("img", { src: src, loading: "lazy", decoding: "async", alt: "frame at " + fmtTime(t) });
    img.addEventListener("error", () => img.replaceWith(el("span", { class: "nothumb" }, ["no frame"])));
    return img;
  }

  function strip(frames, onClick) {
    const box = el("div", { class: "strip" });
    for (const [t, src] of frames) box.appendChild(el("figure", {}, [thumb(src, t), el("figcaption", {}, [fmtTime(t)])]));
    if (onClick) box.addEventListener("click", onClick);
    return box;
  }

  function alignedRows(video) {
    // one row per moment: each captioning run's caption at that time side by side
    const items = [];
    CAPTION_RUNS.forEach((run, col) => video.runs[run].captions.forEach(([t, text]) => items.push([t, col, text])));
    items.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const rows = [];
    for (const [t, col, text] of items) {
      let row = rows[rows.length - 1];
      if (!row || t - row.t > SAME_TIME_S || row.texts[col] !== null) {
        row = { t: t, texts: CAPTION_RUNS.map(() => null) };
        rows.push(row);
      }
      row.texts[col] = text;
    }
    return rows;
  }

  function thumbsByTime(video, runs) {
    const byTime = new Map();
    for (const run of runs) for (const [t, src] of video.runs[run].thumbs) byTime.set(Math.round(t * 1000), [t, src]);
    return byTime;
  }

  function captionTable(video, rows) {
    const byTime = thumbsByTime(video, CAPTION_RUNS);
    const head = [el("th", {}, ["frame"]), el("th", {}, ["time"])];
    if (SEVERAL) CAPTION_RUNS.forEach((run) => head.push(el("th", {}, [RUNS[run].label])));
    else head.push(el("th", {}, ["caption"]));
    const body = el("tbody", {});
    for (const row of rows) {
      const shot = byTime.get(Math.round(row.t * 1000));
      const cells = [el("td", { class: "frame" }, [shot ? thumb(shot[1], row.t) : null]), el("td", { class: "t" }, [fmtTime(row.t)])];
      for (const text of row.texts) {
        cells.push(
          text === null
            ? el("td", { class: "cap missing" }, ["-"])
            : el("td", { class: text ? "cap" : "cap empty" }, [el("div", {}, [text || "(empty caption)"])])
        );
      }
      body.appendChild(el("tr", {}, cells));
    }
    return el("table", { class: "captions" }, [el("thead", {}, [el("tr", {}, head)]), body]);
  }

  function timeline(q) {
    const video = VIDEOS[q.video];
    const box = el("section", { class: "timeline" });
    if (!video || CAPTION_RUNS.length === 0) return video ? null : el("p", { class: "note" }, ["No captions recorded for this video."]);
    CAPTION_RUNS.forEach((run) => {
      const note = video.runs[run].note;
      if (note) box.appendChild(el("p", { class: "note" }, [(SEVERAL ? RUNS[run].label + ": " : "") + note]));
    });
    const rows = alignedRows(video);
    const frames = Array.from(thumbsByTime(video, CAPTION_RUNS).values()).sort((a, b) => a[0] - b[0]);
    const duration = video.duration ? " over " + fmtTime(video.duration) : "";
    box.appendChild(el("h3", {}, ["Transcript: " + rows.length + " caption time(s)" + duration + ", " + frames.length + " thumbnail(s)"]));
    if (rows.length === 0) {
      box.appendChild(el("p", { class: "note" }, ["No captions (see the failure above)."]));
      return box;
    }
    if (rows.length <= COLLAPSE_AT) {
      box.appendChild(captionTable(video, rows));
      return box;
    }
    const toggle = el("button", { type: "button", class: "expand", "aria-expanded": "false" }, ["show all " + rows.length + " captions"]);
    let table = null;
    const flip = () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      toggle.textContent = open ? "collapse" : "show all " + rows.length + " captions";
      if (open && !table) table = box.appendChild(captionTable(video, rows));
      if (table) table.hidden = !open;
    };
    toggle.addEventListener("click", flip);
    if (frames.length) box.appendChild(strip(frames, flip));
    box.appendChild(toggle);
    return box;
  }

  function resultBlock(q, run) {
    const r = q.results[run];
    const letter = r.pred === null || r.pred === undefined ? "none" : LETTERS[r.pred] || String(r.pred);
    const parts = [
      SEVERAL ? el("h4", {}, [RUNS[run].label]) : null,
      el("p", {}, [el("span", { class: "badge " + r.outcome }, [r.outcome]), " status " + r.status + ", prediction " + letter]),
      r.detail ? el("p", { class: "detail" }, [r.detail]) : null,
      el("details", {}, [el("summary", {}, ["raw LLM output"]), el("pre", { class: "raw" }, [r.raw || "(empty)"])]),
    ];
    if (RUNS[run].answerer === "video-llm") {
      const video = VIDEOS[q.video];
      const shown = video ? video.runs[run] : null;
      if (shown && shown.note) parts.push(el("p", { class: "note" }, [shown.note]));
      if (shown && shown.thumbs.length) {
        parts.push(el("p", {}, ["Frames shown to the model: " + shown.sampled + (shown.thumbs.length < shown.sampled ? " (" + shown.thumbs.length + " pictured)" : "")]));
        parts.push(strip(shown.thumbs, null));
      }
    }
    return el("div", { class: "result " + r.outcome }, parts);
  }

  function card(q) {
    const marks = (i) => {
      const tags = [];
      if (q.answer === i) tags.push(el("span", { class: "mark answer" }, ["answer"]));
      q.results.forEach((r, run) => {
        if (r.pred === i) tags.push(el("span", { class: "mark pred" }, [SEVERAL ? RUNS[run].label : "prediction"]));
      });
      return tags;
    };
    const options = el(
      "ol",
      { class: "options" },
      q.options.map((text, i) => el("li", { class: q.answer === i ? "right" : null }, [el("b", {}, [LETTERS[i] + ". "]), text, " ", ...marks(i)]))
    );
    const head = el("div", { class: "cardhead" }, [
      el("a", { href: "#qid=" + encodeURIComponent(q.qid), class: "qid", title: "link to this question" }, [q.qid]),
      el("span", { class: "video" }, ["video " + q.video]),
      q.category ? el("span", { class: "category" }, [q.category]) : null,
      ...q.results.map((r, run) => el("span", { class: "badge " + r.outcome, title: RUNS[run].label }, [(SEVERAL ? RUNS[run].label + ": " : "") + r.outcome])),
    ]);
    return el("article", { class: "card", "data-qid": q.qid }, [
      head,
      el("p", { class: "question" }, [q.question]),
      options,
      el("div", { class: "results" }, q.results.map((r, run) => resultBlock(q, run))),
      timeline(q),
    ]);
  }

  // ------------------------------------------------------------------ lazy rendering

  let filtered = [];
  let rendered = 0;
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) renderMore();
  }, { rootMargin: "600px" });

  function renderMore() {
    const end = Math.min(filtered.length, rendered + BATCH);
    const batch = document.createDocumentFragment();
    for (let i = rendered; i < end; i++) batch.appendChild(card(filtered[i]));
    cards.appendChild(batch);
    rendered = end;
    more.hidden = rendered >= filtered.length;
    more.textContent = more.hidden ? "" : "loading more questions ...";
    observer.unobserve(more);
    if (!more.hidden) observer.observe(more); // fires again if the sentinel is still in view
  }

  function apply() {
    filtered = QUESTIONS.filter(matches);
    cards.replaceChildren();
    rendered = 0;
    const scope = state.qid ? "question " + state.qid + " (link)" : "questions";
    count.textContent = "showing " + filtered.length + " of " + QUESTIONS.length + " " + scope;
    document.body.dataset.shown = String(filtered.length);
    if (filtered.length === 0) cards.appendChild(el("p", { class: "note" }, ["No question matches these filters."]));
    renderMore();
    writeHash();
  }

  function fromControls() {
    state.outcomes = new Set(boxes.filter((b) => b.checked).map((b) => b.value));
    state.run = runSelect ? runSelect.value : "any";
    state.cat = catSelect ? catSelect.value : "";
    state.dis = disagree ? disagree.checked : false;
    state.text = textInput.value.trim();
    state.qid = "";
    apply();
  }

  let typing = null;
  boxes.forEach((b) => b.addEventListener("change", fromControls));
  [runSelect, catSelect, disagree].forEach((c) => c && c.addEventListener("change", fromControls));
  textInput.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(fromControls, 200);
  });
  document.getElementById("f-reset").addEventListener("click", (e) => {
    e.preventDefault();
    location.hash = "";
  });
  window.addEventListener("hashchange", () => {
    if (location.hash.slice(1) !== hashOf()) {
      readHash();
      apply();
    }
  });
  readHash();
  apply();
})();
