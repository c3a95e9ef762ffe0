// pdc view: the probe and ablate pages' forms (everything else is rendered by the server).
// Hand-written, no dependencies, nothing fetched but this server's own /api.
"use strict";

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function post(url, body) {
  const response = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                     body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function shadedCell(piece, ci) {
  const cell = el("td", {class: "tok", title: "CI " + ci.toFixed(4), "data-ci": String(ci)}, piece);
  cell.style.background = "rgba(214, 39, 40, " + Math.min(Math.max(ci, 0), 1).toFixed(3) + ")";
  return cell;
}

function renderProbe(data, into) {
  into.replaceChildren();
  for (const site of data.sites) {
    into.appendChild(el("h2", {}, site.site));
    const table = el("table", {class: "grid probe-table strip"});
    const head = el("tr");
    head.appendChild(el("th", {}, "component"));
    for (const piece of data.pieces) head.appendChild(el("th", {}, piece));
    table.appendChild(head);
    site.components.forEach((c, i) => {
      const row = el("tr");
      const name = el("td");
      name.appendChild(el("a", {href: "/component/" + encodeURIComponent(site.site) + "/" + c}, "#" + c));
      row.appendChild(name);
      site.ci[i].forEach((v, t) => row.appendChild(shadedCell(data.pieces[t], v)));
      table.appendChild(row);
    });
    into.appendChild(table);
  }
}

function renderAblate(data, into) {
  into.replaceChildren();
  into.appendChild(el("p", {}, "next token after " + data.tokens.length + " tokens; KL(clean ‖ ablated) = " +
                                 data.kl.toExponential(3)));
  const table = el("table", {class: "grid", id: "ablate-table"});
  const head = el("tr");
  for (const h of ["token", "id", "clean p", "ablated p", "change"]) head.appendChild(el("th", {}, h));
  table.appendChild(head);
  for (const r of data.top) {
    const row = el("tr");
    row.appendChild(el("td", {class: "piece"}, r.piece));
    row.appendChild(el("td", {}, String(r.token)));
    row.appendChild(el("td", {}, r.clean.toFixed(4)));
    row.appendChild(el("td", {}, r.ablated.toFixed(4)));
    row.appendChild(el("td", {class: r.change >= 0 ? "up" : "down"}, (r.change >= 0 ? "+" : "") + r.change.toFixed(4)));
    table.appendChild(row);
  }
  into.appendChild(table);
}

function probePage() {
  const form = document.getElementById("probe-form");
  if (!form) return;
  const params = new URLSearchParams(location.search);
  if (params.get("site")) document.getElementById("probe-site").value = params.get("site");
  if (params.get("components")) document.getElementById("probe-components").value = params.get("components");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = document.getElementById("probe-status");
    const body = {text: document.getElementById("probe-text").value};
    const site = document.getElementById("probe-site").value;
    const comps = document.getElementById("probe-components").value.split(/[ ,]+/).filter(Boolean).map(Number);
    if (site) body.site = site;
    if (site && comps.length) body.components = comps;
    status.textContent = "computing… (the first request loads and compiles the run)";
    status.className = "muted";
    try {
      renderProbe(await post("/api/probe", body), document.getElementById("probe-result"));
      status.textContent = "";
    } catch (problem) {
      status.textContent = String(problem.message || problem);
      status.className = "error";
    }
  });
}

function ablatePage() {
  const form = document.getElementById("ablate-form");
  if (!form) return;
  const chosen = [];
  const list = document.getElementById("ablate-list");
  const show = () => {
    list.replaceChildren(el("span", {}, chosen.length ? "ablating: " : "nothing ablated yet (the clean model)"));
    for (const a of chosen) list.appendChild(el("span", {class: "ablation"}, a.site + " #" + a.component));
  };
  const params = new URLSearchParams(location.search);
  if (params.get("site") && params.get("component") !== null) {
    chosen.push({site: params.get("site"), component: Number(params.get("component"))});
    document.getElementById("ablate-site").value = params.get("site");
  }
  show();
  document.getElementById("ablate-add").addEventListener("click", () => {
    const c = document.getElementById("ablate-component").value.trim();
    if (c === "" || isNaN(Number(c))) return;
    chosen.push({site: document.getElementById("ablate-site").value, component: Number(c)});
    show();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = document.getElementById("ablate-status");
    status.textContent = "computing… (the first request loads and compiles the run)";
    status.className = "muted";
    try {
      const data = await post("/api/ablate", {text: document.getElementById("ablate-text").value, ablate: chosen});
      renderAblate(data, document.getElementById("ablate-result"));
      status.textContent = "";
    } catch (problem) {
      status.textContent = String(problem.message || problem);
      status.className = "error";
    }
  });
}

document.addEventListener("DOMContentLoaded", () => { probePage(); ablatePage(); });
