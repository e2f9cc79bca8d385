// The page at /: says what the chosen model is for, sends the picked or dropped image to
// POST /predictions/<model> on this origin and shows input and result under a comparison slider,
// with the time taken, the sizes, the server's JSON message when it refuses the file, and a
// download link for the PNG.
"use strict";

const el = Object.fromEntries(
  ["file", "drop", "model", "role", "status", "error", "compare", "input", "result", "slider", "download"]
    .map((id) => [id, document.getElementById(id)]),
);
let chosen = null;      // the File being denoised
let inFlight = null;    // AbortController of the request in progress
const objectUrls = {};  // the blob: URLs shown now, revoked when replaced

function showBlob(key, blob) {
  if (objectUrls[key]) URL.revokeObjectURL(objectUrls[key]);
  objectUrls[key] = URL.createObjectURL(blob);
  return objectUrls[key];
}

function size(bytes) {
  return bytes < 1e6 ? `${(bytes / 1e3).toFixed(1)} kB` : `${(bytes / 1e6).toFixed(2)} MB`;
}

function report(status, error = "") {
  el.status.textContent = status;
  el.error.textContent = error;
  el.error.hidden = !error;
}

async function refusal(response) {
  try {
    const body = await response.json();
    if (body.message) return `${response.status}: ${body.message}`;
  } catch (_) { /* not JSON: fall back to the status line */ }
  return `${response.status}: ${response.statusText || "the server refused the request"}`;
}

function split() {
  el.result.style.clipPath = `inset(0 0 0 ${el.slider.value}%)`;
}

async function denoise() {
  if (!chosen) return;
  inFlight?.abort();
  const controller = (inFlight = new AbortController());
  const label = el.model.selectedOptions[0].textContent;
  el.result.hidden = true;
  el.download.hidden = true;
  report(`Denoising with ${label}…`);
  const started = performance.now();
  try {
    const response = await fetch(`/predictions/${el.model.value}`, {
      method: "POST", body: chosen, signal: controller.signal,
    });
    if (!response.ok) {
      report("", await refusal(response));
      return;
    }
    const png = await response.blob();
    el.result.src = showBlob("result", png);
    await el.result.decode();
    const seconds = (performance.now() - started) / 1000;
    el.result.hidden = false;
    split();
    const { naturalWidth: width, naturalHeight: height } = el.result;
    report(`${label}: ${width} × ${height} px in ${seconds.toFixed(2)} s, ${size(png.size)} PNG from ${size(chosen.size)}`);
    el.download.href = objectUrls.result;
    el.download.download = `${chosen.name.replace(/\.[^.]*$/, "") || "image"}-denoised.png`;
    el.download.hidden = false;
  } catch (error) {
    if (error.name !== "AbortError") report("", `Could not reach the server: ${error.message}`);
  } finally {
    if (inFlight === controller) inFlight = null;
  }
}

function choose(file) {
  if (!file) return;
  chosen = file;
  el.input.src = showBlob("input", file);
  el.compare.hidden = false;
  denoise();
}

function describe() {
  el.role.textContent = el.model.selectedOptions[0].dataset.role;
}

el.file.addEventListener("change", () => choose(el.file.files[0]));
el.model.addEventListener("change", () => {
  describe();
  denoise();
});
el.slider.addEventListener("input", split);
el.drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  el.drop.classList.add("over");
});
el.drop.addEventListener("dragleave", () => el.drop.classList.remove("over"));
el.drop.addEventListener("drop", (event) => {
  event.preventDefault();
  el.drop.classList.remove("over");
  choose(event.dataTransfer.files[0]);
});
describe();
