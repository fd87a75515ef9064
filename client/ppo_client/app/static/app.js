// The app's pages: plain JavaScript over the JSON API (/api/...), keyboard first.
"use strict";

const body = document.body;
const user = body.dataset.user;
const run = body.dataset.run;
const $ = (id) => document.getElementById(id);

async function api(method, path, payload) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (payload !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(payload);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = data.error || `${response.status} ${response.statusText}`;
    showError(message);
    throw new Error(message);
  }
  showError("");
  return data;
}

function showError(message) {
  $("error").textContent = message;
}

function typing(event) {
  const tag = (event.target.tagName || "").toLowerCase();
  return tag === "input" || tag === "select" || tag === "textarea";
}

function go(path) {
  window.location.href = path;
}

// Every user name, run id and image id goes into a URL through encodeURIComponent: a user may be called "a?b#c".
function userPath(page) {
  return `/u/${encodeURIComponent(user)}/${page}`;
}

function userApi(rest) {
  return `/api/users/${encodeURIComponent(user)}/${rest}`;
}

function fixed(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : "n/a";
}

// --- users ---

async function usersPage() {
  const data = await api("GET", "/api/users");
  const list = $("users");
  data.users.forEach((u, i) => {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `/u/${encodeURIComponent(u.name)}/rate`;
    link.textContent = `${i < 9 ? i + 1 + ". " : ""}${u.name}`;
    item.append(link, ` (${u.ratings} ratings, ${u.choices} picks, ${u.models} models)`);
    list.append(item);
  });
  $("new-user").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("user-name").value.trim();
    if (!name) return;
    const created = await api("POST", "/api/users", { name });
    go(`/u/${encodeURIComponent(created.name)}/rate`);
  });
  document.addEventListener("keydown", (event) => {
    if (typing(event)) return;
    const n = Number(event.key);
    if (n >= 1 && n <= data.users.length && n <= 9) go(`/u/${encodeURIComponent(data.users[n - 1].name)}/rate`);
  });
}

// --- rate: one image at a time, or a slate of four or two to pick from, all chosen by the server ---

const MODES = {
  rate: { name: "rating", k: 0 },
  pick: { name: "pick one of four", k: 4, keys: "1-4 pick · n none of them · u undo · r rate · w which of two · t taste · p optimize" },
  pair: { name: "which of two", k: 2, keys: "1 / \u2190 left, 2 / \u2192 right · s the same · n neither · u undo · r rate · f pick one of four · t taste · p optimize" },
};

async function ratePage() {
  const skipped = [];
  const history = []; // every answer given on this page, newest last: {kind: "rating", image} or {kind: "choice", id, slate, mode}
  let current = null;
  let slate = null;
  let order = "active";
  let mode = "rate";
  let busy = false;

  function counts(data) {
    if (typeof data.rated === "number") $("rated").textContent = data.rated;
    if (typeof data.choices === "number") $("chosen").textContent = data.choices;
  }

  function gallery(g) {
    $("preparing").textContent = g.error ? `(starter gallery failed: ${g.error})` : g.done < g.total ? `(preparing the starter gallery: ${g.done} of ${g.total})` : "";
    return g.done < g.total && !g.error;
  }

  async function next() {
    const query = new URLSearchParams({ count: "1", order, exclude: skipped.join(",") });
    const data = await api("GET", userApi(`next?${query}`));
    if (mode !== "rate") return;
    counts(data);
    $("order").textContent = data.order;
    const coming = gallery(data.gallery);
    current = data.images[0] || null;
    if (current) {
      $("current").src = current.url;
      $("current").hidden = false;
      $("why").textContent = current.why;
      $("label").textContent = current.label;
    } else {
      $("current").hidden = true;
      $("why").textContent = coming ? "images are on their way..." : "nothing left to rate: press t to train your taste model";
      $("label").textContent = "";
      if (coming) setTimeout(next, 1000);
    }
  }

  function showSlate(data, why) {
    slate = data.images.length ? data : null;
    $("slate-why").textContent = why;
    const holder = $("slate");
    holder.replaceChildren();
    holder.dataset.slate = data.slate || "";
    data.images.forEach((image, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "pick";
      const img = document.createElement("img");
      img.src = image.url;
      img.alt = `image ${i + 1}${image.label ? `: ${image.label}` : ""}`;
      const key = document.createElement("span");
      key.className = "key";
      key.textContent = mode === "pair" ? ["1 / \u2190", "2 / \u2192"][i] : String(i + 1);
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = image.label;
      button.append(img, key, label);
      button.addEventListener("click", () => pick(i));
      holder.append(button);
    });
  }

  async function nextSlate() {
    const asked = mode;
    const data = await api("GET", userApi(`slate?k=${MODES[asked].k}`));
    if (mode !== asked) return;
    counts(data);
    const coming = gallery(data.gallery);
    showSlate(data, data.images.length ? data.why : coming ? "images are on their way..." : data.why);
    if (!data.images.length && coming) setTimeout(nextSlate, 1000);
  }

  async function setMode(next_mode) {
    if (!MODES[next_mode]) return; // a switch is never refused, even while an answer is on its way
    mode = next_mode;
    slate = null;
    $("slate").replaceChildren(); // the last mode's slate is never answered in this one
    $("slate").dataset.slate = "";
    for (const button of document.querySelectorAll(".modes button")) {
      button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
    }
    $("mode-name").textContent = MODES[mode].name;
    $("rate-mode").hidden = mode !== "rate";
    $("slate-mode").hidden = mode === "rate";
    $("order-part").hidden = mode !== "rate";
    $("same").hidden = mode !== "pair";
    $("none-of-them").textContent = mode === "pair" ? "neither (n)" : "none of them (n)";
    $("slate-keys").textContent = MODES[mode].keys || "";
    if (mode === "rate") await next();
    else await nextSlate();
  }

  async function rate(value) {
    if (!current || busy) return;
    busy = true;
    try {
      const data = await api("POST", userApi("ratings"), { image: current.id, rating: value });
      history.push({ kind: "rating", image: current });
      counts(data);
      await next();
    } finally {
      busy = false;
    }
  }

  // one POST per answer: the image picked (index into the slate), "none" or "same"
  async function answer(index, outcome) {
    if (!slate || busy) return;
    busy = true;
    try {
      const payload = { slate: slate.slate, shown: slate.images.map((i) => i.id), outcome };
      if (outcome === "chosen") payload.chosen = slate.images[index].id;
      const data = await api("POST", userApi("choices"), payload);
      history.push({ kind: "choice", id: data.choice, slate, mode });
      $("chosen").textContent = data.choices;
      slate = null;
      await nextSlate();
    } finally {
      busy = false;
    }
  }

  function pick(index) {
    if (slate && index < slate.images.length) return answer(index, "chosen");
  }

  async function undo() {
    const last = history[history.length - 1];
    if (!last || busy) return;
    busy = true;
    try {
      history.pop();
      if (last.kind === "rating") {
        const data = await api("DELETE", userApi(`ratings/${encodeURIComponent(last.image.id)}`));
        busy = false;
        if (mode !== "rate") await setMode("rate");
        counts(data);
        current = last.image;
        $("current").src = current.url;
        $("current").hidden = false;
        $("why").textContent = "undone: rate it again";
        $("label").textContent = current.label;
      } else {
        const data = await api("DELETE", userApi(`choices/${encodeURIComponent(last.id)}`));
        $("chosen").textContent = data.choices;
        if (mode !== last.mode) {
          busy = false;
          await setMode(last.mode);
        }
        showSlate(last.slate, "undone: pick again");
      }
    } finally {
      busy = false;
    }
  }

  for (const button of document.querySelectorAll(".modes button")) {
    button.addEventListener("click", () => setMode(button.dataset.mode));
  }
  $("none-of-them").addEventListener("click", () => answer(null, "none"));
  $("same").addEventListener("click", () => answer(null, "same"));
  $("undo").addEventListener("click", undo);

  document.addEventListener("keydown", async (event) => {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (key === "r" && mode !== "rate") await setMode("rate");
    else if (key === "f" && mode !== "pick") await setMode("pick");
    else if (key === "w" && mode !== "pair") await setMode("pair");
    else if (key === "u") await undo();
    else if (key === "t") go(userPath("taste"));
    else if (key === "p") go(userPath("optimize"));
    else if (mode === "rate") {
      if (/^[0-9]$/.test(key)) {
        event.preventDefault();
        await rate(key === "0" ? 10 : Number(key));
      } else if (key === "s" && current) {
        skipped.push(current.id);
        await next();
      } else if (key === "o") {
        order = order === "active" ? "random" : "active";
        await next();
      }
    } else if (/^[1-4]$/.test(key)) {
      event.preventDefault();
      await pick(Number(key) - 1);
    } else if (mode === "pair" && (key === "ArrowLeft" || key === "ArrowRight")) {
      event.preventDefault();
      await pick(key === "ArrowLeft" ? 0 : 1);
    } else if (key === "n") {
      await answer(null, "none");
    } else if (mode === "pair" && (key === "s" || key === "=")) {
      await answer(null, "same");
    }
  });
  await next();
}

// --- taste: models, training, what the model likes ---

function strip(id, images) {
  const holder = $(id);
  holder.replaceChildren();
  for (const item of images) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = item.url;
    img.alt = item.label || "image";
    const caption = document.createElement("figcaption");
    caption.textContent = `${fixed(item.score, 1)}${item.rating !== null ? ` (rated ${item.rating})` : ""}`;
    figure.append(img, caption);
    holder.append(figure);
  }
}

async function tastePage() {
  async function refresh() {
    const data = await api("GET", userApi("models"));
    const rows = $("models").querySelector("tbody");
    rows.replaceChildren();
    for (const m of data.models) {
      const row = document.createElement("tr");
      for (const value of [m.id, m.method, m.ratings, m.choices, (m.signals || []).join(", "), fixed(m.cv_srocc, 3), fixed(m.cv_mae, 2)]) {
        const cell = document.createElement("td");
        cell.textContent = value ?? "";
        row.append(cell);
      }
      rows.append(row);
    }
    strip("likes", data.likes);
    strip("dislikes", data.dislikes);
  }

  async function train() {
    $("training").textContent = "training...";
    try {
      const m = await api("POST", userApi("train"), { method: "bayes" });
      const description = m.description_version ? `, description v${m.description_version}` : "";
      $("training").textContent = `model ${m.model} on ${m.ratings} ratings, ${m.choices} picks${description}: cross-validated SROCC ${fixed(m.cv_srocc, 3)}`;
      await refresh();
    } catch (error) {
      $("training").textContent = "";
    }
  }

  function version(d) {
    $("description-version").textContent = d.version ? `saved: version ${d.version}` : "no description yet";
  }

  $("describe").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("description").value.trim();
    if (!text) return;
    const saved = await api("PUT", userApi("description"), { text });
    $("description").value = saved.text;
    version(saved);
    document.activeElement.blur(); // the page's keys (t to train) work again
  });
  const current = await api("GET", userApi("description"));
  $("description").value = current.text;
  version(current);
  $("train").addEventListener("click", train);
  document.addEventListener("keydown", async (event) => {
    if (typing(event)) return;
    if (event.key === "t") await train();
    else if (event.key === "r") go(userPath("rate"));
    else if (event.key === "p") go(userPath("optimize"));
  });
  await refresh();
}

// --- optimize: start a run and watch it ---

function curve(scores) {
  const svg = $("curve");
  svg.replaceChildren();
  if (scores.length === 0) return;
  const low = Math.min(...scores), high = Math.max(...scores);
  const span = high - low || 1;
  const x = (i) => 20 + (440 * i) / Math.max(scores.length - 1, 1);
  const y = (s) => 140 - (120 * (s - low)) / span;
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", scores.map((s, i) => `${x(i)},${y(s)}`).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2060c0");
  line.setAttribute("stroke-width", "2");
  svg.append(line);
  for (const [value, at] of [[high, 20], [low, 140]]) {
    const text = document.createElementNS("http://www.w3.org/2000/svg", "text");
    text.setAttribute("x", "462");
    text.setAttribute("y", String(at + 4));
    text.setAttribute("font-size", "11");
    text.textContent = value.toFixed(2);
    svg.append(text);
  }
}

async function watch(id) {
  $("run").hidden = false;
  const status = await api("GET", `/api/runs/${encodeURIComponent(id)}`);
  $("run-title").textContent = status.prompt;
  $("run-status").textContent = status.status + (status.error ? `: ${status.error}` : "");
  $("run-progress").textContent = `${status.iterations.length} of ${status.iterations_total} iterations`;
  const best = [];
  let top = -Infinity;
  const list = $("iterations-list");
  list.replaceChildren();
  for (const it of status.iterations) {
    if (typeof it.best_score === "number") top = Math.max(top, it.best_score);
    best.push(top);
    const item = document.createElement("li");
    const img = document.createElement("img");
    img.src = it.best_image;
    img.alt = it.best_prompt;
    img.className = "thumb";
    item.append(img, ` ${fixed(it.best_score, 2)}: ${it.best_prompt}`);
    list.append(item);
  }
  curve(best);
  const link = $("compare-link");
  if (status.status === "finished") {
    link.href = `/runs/${encodeURIComponent(id)}/compare`;
    link.hidden = false;
  }
  if (status.status === "running") setTimeout(() => watch(id), 1000);
}

async function optimizePage() {
  const runs = await api("GET", userApi("runs"));
  for (const r of runs.runs) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `#${encodeURIComponent(r.id)}`;
    link.textContent = `${r.prompt} (${r.optimizer}, ${r.status}${typeof r.best_score === "number" ? `, best ${r.best_score.toFixed(2)}` : ""})`;
    link.addEventListener("click", () => watch(r.id));
    item.append(link);
    $("runs").append(item);
  }
  $("optimizer").addEventListener("change", () => {
    $("screen").value = $("optimizer").selectedOptions[0].dataset.screen; // each optimizer's own default K
  });
  $("new-run").addEventListener("submit", async (event) => {
    event.preventDefault();
    const payload = {
      prompt: $("prompt").value,
      iterations: Number($("iterations").value),
      optimizer: $("optimizer").value,
      context: $("context").value,
      screen: Number($("screen").value),
      exploration: Number($("exploration").value),
      preview_steps: Number($("preview-steps").value),
      steps: Number($("steps").value),
      guidance_scale: Number($("guidance").value),
    };
    const created = await api("POST", userApi("runs"), payload);
    document.activeElement.blur(); // the page's keys (c to compare) work again
    window.location.hash = encodeURIComponent(created.id);
    await watch(created.id);
  });
  document.addEventListener("keydown", (event) => {
    if (typing(event)) return;
    if (event.key === "c" && !$("compare-link").hidden) go($("compare-link").href);
    else if (event.key === "r") go(userPath("rate"));
    else if (event.key === "t") go(userPath("taste"));
  });
  if (window.location.hash.length > 1) await watch(decodeURIComponent(window.location.hash.slice(1)));
}

// --- compare: blind pairs ---

async function comparePage() {
  $("error").textContent = "preparing the pairs...";
  const data = await api("GET", `/api/runs/${encodeURIComponent(run)}/pairs`);
  const pairs = data.pairs;
  let k = pairs.findIndex((p) => !p.choice);
  $("pair-total").textContent = pairs.length;

  function show(result) {
    if (k < 0 || k >= pairs.length) {
      $("result").hidden = false;
      const r = result || data.result;
      const [low, high] = r.interval || [0, 0];
      $("result-text").textContent = r.win_rate === null ? "no pairs answered"
        : `The optimized prompt won ${Math.round(100 * r.win_rate)}% (95% interval ${Math.round(100 * low)}-${Math.round(100 * high)}%): ` +
          `preferred ${r.optimized_preferred}, your own prompt ${r.initial_preferred}, the same ${r.same}.`;
      $("pair").hidden = true;
      return;
    }
    $("pair-index").textContent = k + 1;
    $("left").src = pairs[k].left;
    $("right").src = pairs[k].right;
  }

  async function choose(choice) {
    if (k < 0 || k >= pairs.length) return;
    const result = await api("POST", `/api/runs/${encodeURIComponent(run)}/pairs/${k}`, { choice });
    pairs[k].choice = choice;
    k = pairs.findIndex((p) => !p.choice);
    show(result);
  }

  document.addEventListener("keydown", async (event) => {
    if (typing(event)) return;
    if (event.key === "ArrowLeft" || event.key === "1") await choose("left");
    else if (event.key === "ArrowRight" || event.key === "2") await choose("right");
    else if (event.key === "=" || event.key === "s") await choose("same");
  });
  show(null);
}

const pages = { users: usersPage, rate: ratePage, taste: tastePage, optimize: optimizePage, compare: comparePage };
if (pages[body.dataset.page]) pages[body.dataset.page]().catch((error) => showError(String(error.message || error)));
