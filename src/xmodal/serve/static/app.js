// The search page: text queries, image and audio queries (drop or pick a file), results grid
// (thumbnails, or players for an audio gallery), captions panel.
const $ = (id) => document.getElementById(id);
const results = $("results"), details = $("details"), status = $("status");
let galleryItems = Infinity; // from /health: k is capped at the gallery's size

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

function player(src) {
  const audio = element("audio", { controls: true, preload: "none", src });
  audio.addEventListener("click", (event) => event.stopPropagation()); // playing is not selecting
  return audio;
}

function k() {
  return Math.min(Number($("k").value), galleryItems);
}

function minProbability() { // {} when not chosen (or the model is not calibrated)
  const value = $("min-p").value;
  return value ? { min_probability: value } : {};
}

function render(body, ms, what) {
  results.replaceChildren();
  details.hidden = true;
  for (const hit of body.results) {
    const card = element("figure", { className: "result", title: hit.captions[0] || hit.id });
    if (hit.thumbnail) card.append(element("img", { src: hit.thumbnail, alt: hit.captions[0] || hit.id, loading: "lazy" }));
    if (hit.media) card.append(player(hit.media));
    if (!hit.thumbnail) card.append(element("p", {}, hit.captions[0] || hit.id));
    const caption = element("figcaption");
    caption.append(element("span", {}, `#${hit.rank}`), element("span", { className: "score" }, hit.score.toFixed(3)));
    if (hit.probability !== null) {
      const title = "Probability that this is a true match (calibrated on held-out pairs)";
      caption.append(element("span", { className: "probability", title }, `p ${Math.round(100 * hit.probability)} %`));
    }
    card.append(caption);
    card.addEventListener("click", () => show(hit, card));
    results.append(card);
  }
  const none = body.results.length ? "" : " (no match above the chosen probability)";
  say(`${body.results.length} results for ${what} in ${Math.round(ms)} ms${none}`);
}

async function show(hit, card) {
  const id = hit.id;
  try {
    const [item] = await call(`/items/${encodeURIComponent(id)}`);
    document.querySelectorAll(".result.selected").forEach((c) => c.classList.remove("selected"));
    card.classList.add("selected");
    details.replaceChildren();
    if (item.thumbnail) details.append(element("img", { src: item.thumbnail, alt: id }));
    if (hit.media) details.append(player(hit.media));
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
  const params = new URLSearchParams({ q, k: k(), csls: $("csls").checked, ...minProbability() });
  say("Searching…");
  try {
    const [body, ms] = await call(`/search?${params}`);
    render(body, ms, `“${q.trim()}”`);
  } catch (error) {
    say(error.message, true);
  }
}

// Search by a file: a recording goes to /search/audio, anything else to /search/image.
async function searchFile(file, kind = file.type.startsWith("audio/") ? "audio" : "image") {
  const form = new FormData();
  form.append(kind, file);
  say(`Searching by ${file.name}…`);
  try {
    const params = new URLSearchParams({ k: k(), ...minProbability() });
    const [body, ms] = await call(`/search/${kind}?${params}`, { method: "POST", body: form });
    render(body, ms, `${kind} ${file.name}`);
  } catch (error) {
    say(error.message, true);
  }
}

$("search").addEventListener("submit", (event) => { event.preventDefault(); searchText(); });
for (const kind of ["image", "audio"]) {
  $(kind).addEventListener("change", (event) => { if (event.target.files[0]) searchFile(event.target.files[0], kind); });
}

let dragDepth = 0;
window.addEventListener("dragenter", (event) => { event.preventDefault(); dragDepth++; $("drop").hidden = false; });
window.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("drop").hidden = true; } });
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  $("drop").hidden = true;
  const file = event.dataTransfer.files[0];
  if (file) searchFile(file);
});

fetch("/health").then((r) => r.json()).then((h) => {
  galleryItems = h.items;
  $("min-p-label").hidden = !h.calibrated.length;
  const encoders = Object.entries(h.encoders).map(([modality, name]) => `${modality} ${name}`);
  $("about").textContent = [`${h.items} ${h.modality} items`, ...encoders, h.aligner].join(" · ");
});
