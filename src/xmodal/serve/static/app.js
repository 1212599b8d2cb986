// The search page: text queries, image queries (drop or pick a file), results grid, captions panel.
const $ = (id) => document.getElementById(id);
const results = $("results"), details = $("details"), status = $("status");

function say(message, isError = false) {
  status.textContent = message;
  status.classList.toggle("error", isError);
}

async function call(url, options) {
  const started = performance.now();
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return [body, performance.now() - started];
}

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  Object.assign(node, attributes);
  if (text) node.textContent = text;
  return node;
}

function render(body, ms, what) {
  results.replaceChildren();
  details.hidden = true;
  for (const hit of body.results) {
    const card = element("figure", { className: "result", title: hit.captions[0] || hit.id });
    if (hit.thumbnail) card.append(element("img", { src: hit.thumbnail, alt: hit.captions[0] || hit.id, loading: "lazy" }));
    else card.append(element("p", {}, hit.captions[0] || hit.id));
    const caption = element("figcaption");
    caption.append(element("span", {}, `#${hit.rank}`), element("span", { className: "score" }, hit.score.toFixed(3)));
    card.append(caption);
    card.addEventListener("click", () => show(hit.id, card));
    results.append(card);
  }
  say(`${body.results.length} results for ${what} in ${Math.round(ms)} ms`);
}

async function show(id, card) {
  try {
    const [item] = await call(`/items/${encodeURIComponent(id)}`);
    document.querySelectorAll(".result.selected").forEach((c) => c.classList.remove("selected"));
    card.classList.add("selected");
    details.replaceChildren();
    if (item.thumbnail) details.append(element("img", { src: item.thumbnail, alt: id }));
    details.append(element("h2", {}, item.id));
    const list = element("ul", { id: "captions" });
    for (const text of item.captions) list.append(element("li", {}, text));
    details.append(item.captions.length ? list : element("p", {}, "No captions."));
    details.hidden = false;
  } catch (error) {
    say(error.message, true);
  }
}

async function searchText() {
  const q = $("q").value;
  const params = new URLSearchParams({ q, k: $("k").value, csls: $("csls").checked });
  say("Searching…");
  try {
    const [body, ms] = await call(`/search?${params}`);
    render(body, ms, `“${q.trim()}”`);
  } catch (error) {
    say(error.message, true);
  }
}

async function searchImage(file) {
  const form = new FormData();
  form.append("image", file);
  say(`Searching by ${file.name}…`);
  try {
    const [body, ms] = await call(`/search/image?k=${$("k").value}`, { method: "POST", body: form });
    render(body, ms, `image ${file.name}`);
  } catch (error) {
    say(error.message, true);
  }
}

$("search").addEventListener("submit", (event) => { event.preventDefault(); searchText(); });
$("image").addEventListener("change", (event) => { if (event.target.files[0]) searchImage(event.target.files[0]); });

let dragDepth = 0;
window.addEventListener("dragenter", (event) => { event.preventDefault(); dragDepth++; $("drop").hidden = false; });
window.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("drop").hidden = true; } });
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  $("drop").hidden = true;
  const file = event.dataTransfer.files[0];
  if (file) searchImage(file);
});

fetch("/health").then((r) => r.json()).then((h) => {
  $("about").textContent = `${h.items} ${h.modality}s · text ${h.encoders.text} · image ${h.encoders.image} · ${h.aligner}`;
});
