"""What `pdc view` shows, as JSON-ready dicts: the one place that reads the run directory, the
harvest store and the live model. The API returns these dicts as they are; the pages render
them. Nothing here writes: the run directory and the store are only read.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pdc.analyze.store import SORTABLE, Harvest
from pdc.analyze.tokens import Decoder, TokenizerError, tokenizer_of_ir
from pdc.ir.graph import IR
from pdc.ir.nodes import SiteNode, TargetNode
from pdc.run.rundir import read_jsonl

MAX_TEXT = 4000          # characters of probe / ablate text
MAX_TOKENS = 512         # tokens of probe / ablate text (also capped by the target's max_positions)
MAX_PAGE = 500           # components per site page
PROBE_TOP = 8            # components per site the probe shows when none are chosen
ABLATE_TOP = 10          # tokens per side in the ablation table
NO_HARVEST = ("this run has no harvest loaded: make one with `pdc harvest RUN --out DIR`, then "
              "`pdc view RUN --harvest DIR`")


class ViewError(Exception):
    """A request the viewer answers with an HTTP error and a JSON body `{"error", "status"}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _finite(value: Any) -> Any:
    """NaN/inf → None, so every answer is strict JSON."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


@dataclass
class Viewer:
    """The run directory, its IR, an optional harvest and (loaded on first use) the live model."""

    run_dir: Path
    ir: IR
    harvest: Harvest | None = None
    live: Any = None  # pdc.analyze.live.Live, loaded by `live_model()` on the first probe/ablate
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _decoder: Decoder | None = field(default=None, repr=False)

    # ---- run --------------------------------------------------------------------------------

    @property
    def record(self) -> dict[str, Any]:
        path = self.run_dir / "run.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def site_nodes(self) -> list[SiteNode]:
        return [node for _, node in sorted(self.ir.nodes(SiteNode), key=lambda pair: pair[1].order)]

    @property
    def site_names(self) -> list[str]:
        """Sites in the run's canonical order (the harvest's, when one is loaded)."""
        return self.harvest.sites if self.harvest is not None else [n.path for n in self.site_nodes()]

    def check_site(self, site: str) -> None:
        if site not in self.site_names:
            raise ViewError(404, f"no site {site!r}; sites: {', '.join(self.site_names)}")

    @property
    def decoder(self) -> Decoder:
        if self._decoder is None:
            spec = (self.harvest.manifest.get("tokenizer") if self.harvest is not None else None) \
                or tokenizer_of_ir(self.ir)
            self._decoder = Decoder(dict(spec))
        return self._decoder

    def curves(self) -> dict[str, list[list[float]]]:
        """metric name → [[step, value], ...] of the run's losses (metrics.jsonl) and eval
        CI-L0 totals (eval.jsonl)."""
        out: dict[str, list[list[float]]] = {}
        for record in read_jsonl(self.run_dir / "metrics.jsonl"):
            for name, value in record.items():
                if name.startswith("loss/") and isinstance(value, (int, float)) and math.isfinite(value):
                    out.setdefault(name, []).append([record["step"], value])
        for record in read_jsonl(self.run_dir / "eval.jsonl"):
            for name, value in record.items():
                if name.startswith("eval/") and name.endswith("_total") and isinstance(value, (int, float)):
                    out.setdefault(name, []).append([record["step"], value])
        return out

    def site_summary(self) -> list[dict[str, Any]]:
        """Per site: C, CI-L0 and alive — the harvest's (Σ density, alive count) when there is
        one, and the last training record's (`ci_l0/SITE`, `alive/SITE`)."""
        last = (read_jsonl(self.run_dir / "metrics.jsonl") or [{}])[-1]
        harvested: dict[str, dict[str, Any]] = {}
        if self.harvest is not None:
            rows = self.harvest.records("select site, count(*) as c, sum(density) as l0, "
                                        "sum(cast(alive as integer)) as alive from components group by site")
            harvested = {r["site"]: r for r in rows}
        C = {n.path: n.C for n in self.site_nodes()}
        out = []
        for site in self.site_names:
            h = harvested.get(site)
            out.append({"name": site, "C": C.get(site, h["c"] if h else None),
                        "train_ci_l0": _finite(last.get(f"ci_l0/{site}")),
                        "train_alive": _finite(last.get(f"alive/{site}")),
                        "harvest_ci_l0": _finite(float(h["l0"])) if h else None,
                        "harvest_alive": int(h["alive"]) if h else None})
        return out

    def run_info(self) -> dict[str, Any]:
        record = self.record
        spec_file = self.run_dir / "spec.pd"
        return {
            "run": str(self.run_dir.resolve()), "spec": record.get("spec", self.ir.spec.name),
            "decomposition_hash": record.get("decomposition_hash"), "runtime_hash": record.get("runtime_hash"),
            "overrides": record.get("overrides", []), "versions": record.get("versions", {}),
            "spec_text": spec_file.read_text() if spec_file.is_file() else "",
            "provenance": record.get("provenance", {}), "curves": self.curves(),
            "sites": self.site_summary(), "harvest": self.harvest.manifest if self.harvest is not None else None,
            "tokenizer": self.decoder.spec,
        }

    # ---- harvest ----------------------------------------------------------------------------

    def need_harvest(self) -> Harvest:
        if self.harvest is None:
            raise ViewError(404, NO_HARVEST)
        return self.harvest

    def site_page(self, site: str, sort: str = "density", descending: bool = True, offset: int = 0,
                  limit: int = 50) -> dict[str, Any]:
        """One page of a site's components, sorted by DuckDB, each with its CI histogram."""
        harvest = self.need_harvest()
        self.check_site(site)
        if sort not in SORTABLE:
            raise ViewError(422, f"sort by one of {', '.join(SORTABLE)}, not {sort!r}")
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise ViewError(422, f"limit must be 1..{MAX_PAGE} and offset ≥ 0")
        rows = harvest.components(site, sort=sort, descending=descending, offset=offset, limit=limit)
        counts = harvest.histograms(site, [r["component"] for r in rows])
        total = harvest.count(site)
        for row in rows:
            row["histogram"] = counts.get(row["component"], [])
        return {"site": site, "total": total, "sort": sort, "descending": descending, "offset": offset,
                "limit": limit, "histogram_edges": harvest.manifest.get("histogram_edges", []),
                "components": [{k: _finite(v) for k, v in r.items()} for r in rows]}

    def component_page(self, site: str, component: int) -> dict[str, Any]:
        harvest = self.need_harvest()
        self.check_site(site)
        row = harvest.component(site, component)
        if row is None:
            raise ViewError(404, f"site {site!r} has no component {component}")
        decoder = self.decoder
        examples = []
        for ex in harvest.examples(site, component):
            examples.append({"kind": ex["kind"], "rank": ex["rank"], "position": ex["position"],
                             "center": ex["center"], "tokens": ex["tokens"], "pieces": decoder.pieces(ex["tokens"]),
                             "text": decoder.text(ex["tokens"]), "ci": ex["ci"], "act": ex["act"]})
        edges, counts = harvest.histogram(site, component)
        pmi = {direction: [{**r, "piece": decoder.piece(r["token"]), "pmi": _finite(r["pmi"])}
                           for r in harvest.pmi(site, component, direction)] for direction in ("input", "output")}
        return {"site": site, "component": {k: _finite(v) for k, v in row.items()}, "examples": examples,
                "histogram": {"edges": edges, "counts": counts}, "pmi": pmi,
                "neighbors": harvest.neighbors(site, component),
                "neighbor_score": harvest.manifest.get("neighbor_score")}

    def search(self, query: str, limit: int = 50) -> dict[str, Any]:
        harvest = self.need_harvest()
        if not query:
            raise ViewError(422, "search for a token or a string: /api/search?q=TEXT")
        if len(query) > MAX_TEXT:
            raise ViewError(413, f"the query is {len(query)} characters; at most {MAX_TEXT}")
        ids = self._search_ids(query)
        rows = harvest.search(ids, limit=max(1, min(limit, MAX_PAGE))) if ids else []
        for row in rows:
            row["piece"] = self.decoder.piece(row["token"])
            row["pmi"] = _finite(row["pmi"])
        return {"query": query, "tokens": [{"id": t, "piece": self.decoder.piece(t)} for t in ids],
                "components": rows}

    def _search_ids(self, query: str) -> list[int]:
        """The query's token ids: `#123` is id 123; else the text encoded (unique ids, in order)."""
        if query.startswith("#") and query[1:].isdigit():
            return [int(query[1:])]
        try:
            ids = self.decoder.encode(query)
        except TokenizerError as error:
            raise ViewError(422, str(error)) from None
        return list(dict.fromkeys(ids))[:64]

    # ---- live -------------------------------------------------------------------------------

    def live_model(self) -> Any:
        """The run's checkpoint, loaded (and its probe jitted) on the first live request."""
        with self._lock:
            if self.live is None:
                from pdc.analyze.live import Live
                from pdc.run.load import load_ir_run

                self.live = Live(load_ir_run(self.run_dir, self.ir))
            return self.live

    def encode(self, text: Any) -> list[int]:
        if not isinstance(text, str) or not text:
            raise ViewError(422, "`text` must be a non-empty string")
        if len(text) > MAX_TEXT:
            raise ViewError(413, f"the text is {len(text)} characters; at most {MAX_TEXT}")
        try:
            ids = self.decoder.encode(text)
        except TokenizerError as error:
            raise ViewError(422, str(error)) from None
        limit = min(MAX_TOKENS, int(getattr(self._target_options(), "max_positions", None) or MAX_TOKENS),
                    self._learned_positions())
        if not ids or len(ids) > limit:
            raise ViewError(413 if ids else 422, f"the text is {len(ids)} tokens; 1..{limit} fit")
        return ids

    def _learned_positions(self) -> int:
        """The rows of a learned position table (GPT-2's `n_positions`), else no limit."""
        target = next((node for _, node in self.ir.nodes(TargetNode)), None)
        return int(dict(target.dims).get("positions", MAX_TOKENS)) if target is not None else MAX_TOKENS

    def _target_options(self) -> Any:
        try:
            return self.ir.options("target")
        except Exception:  # noqa: BLE001 — a target without options: no limit of its own
            return None

    def probe(self, body: dict[str, Any]) -> dict[str, Any]:
        """Per token, the CI of the chosen components of one site, or of each site's top firing ones."""
        ids = self.encode(body.get("text"))
        site, chosen = body.get("site"), body.get("components")
        if site is not None:
            if not isinstance(site, str):
                raise ViewError(422, "`site` must be a site name")
            self.check_site(site)
        if chosen is not None:
            if site is None or not isinstance(chosen, list) or not all(isinstance(c, int) for c in chosen):
                raise ViewError(422, "`components` is a list of component indices of the `site` given")
            if len(chosen) > MAX_PAGE:
                raise ViewError(413, f"at most {MAX_PAGE} components")
        live = self.live_model()
        if chosen is not None:
            C = live.components_of(site)
            bad = [c for c in chosen if not 0 <= c < C]
            if bad:
                raise ViewError(404, f"site {site!r} has no component {bad[0]} (C = {C})")
        ci = live.probe(ids)
        sites = []
        for name in ([site] if site is not None else self.site_names):
            values = ci[name]
            comps = list(chosen) if chosen is not None else \
                [int(c) for c in np.argsort(-values.max(axis=0), kind="stable")[:PROBE_TOP]]
            sites.append({"site": name, "components": comps,
                          "ci": [[float(v) for v in values[:, c]] for c in comps]})
        return {"tokens": ids, "pieces": self.decoder.pieces(ids), "sites": sites}

    def ablate(self, body: dict[str, Any]) -> dict[str, Any]:
        """The next-token distribution after the text, clean and with the chosen components out."""
        ids = self.encode(body.get("text"))
        raw = body.get("ablate", [])
        if not isinstance(raw, list) or len(raw) > MAX_PAGE:
            raise ViewError(422, f"`ablate` is a list of at most {MAX_PAGE} {{\"site\", \"component\"}}")
        live = self.live_model()
        chosen: dict[str, list[int]] = {}
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("site"), str) or \
                    not isinstance(item.get("component"), int):
                raise ViewError(422, "each `ablate` entry is {\"site\": NAME, \"component\": INDEX}")
            self.check_site(item["site"])
            if not 0 <= item["component"] < live.components_of(item["site"]):
                raise ViewError(404, f"site {item['site']!r} has no component {item['component']}")
            chosen.setdefault(item["site"], []).append(item["component"])
        clean, ablated = live.next_token(ids, chosen)
        top = int(body.get("top", ABLATE_TOP)) if isinstance(body.get("top", ABLATE_TOP), int) else ABLATE_TOP
        top = max(1, min(top, 100))
        shown = list(dict.fromkeys([*np.argsort(-clean, kind="stable")[:top], *np.argsort(-ablated, kind="stable")[:top]]))
        rows = sorted(({"token": int(t), "piece": self.decoder.piece(int(t)), "clean": float(clean[t]),
                        "ablated": float(ablated[t]), "change": float(ablated[t] - clean[t])} for t in shown),
                      key=lambda r: -r["clean"])
        p, q = clean.astype(np.float64), ablated.astype(np.float64)
        kl = float(np.sum(np.where(p > 0, p * (np.log(np.maximum(p, 1e-30)) - np.log(np.maximum(q, 1e-30))), 0.0)))
        out = {"tokens": ids, "pieces": self.decoder.pieces(ids), "position": len(ids) - 1,
               "ablated_components": [{"site": s, "component": c} for s, cs in chosen.items() for c in cs],
               "top": rows, "kl": kl}
        if body.get("full") is True:
            out["clean"] = [float(v) for v in clean]
            out["ablated"] = [float(v) for v in ablated]
        return out


def parse_component(raw: str) -> int:
    """A component index from a path segment (digits only, else 404: it names nothing)."""
    if not raw.isdigit() or len(raw) > 9:
        raise ViewError(404, f"no component {raw!r}")
    return int(raw)


def open_viewer(run_dir: str | Path, harvest_dir: str | Path | None = None) -> Viewer:
    """The viewer of a run directory (and a harvest store): `RunError` / `StoreError` when
    either is not what it should be."""
    from pdc.analyze.store import load_harvest
    from pdc.run.rundir import run_ir

    run_dir = Path(run_dir)
    ir = run_ir(run_dir)
    harvest_dir = harvest_dir if harvest_dir is not None else latest_harvest(run_dir)
    harvest = load_harvest(harvest_dir) if harvest_dir is not None else None
    return Viewer(run_dir, ir, harvest)


def latest_harvest(run_dir: Path) -> Path | None:
    """The store `pdc harvest RUN` wrote by default (`RUN/harvest-<step>`) of the latest step,
    if there is one: `pdc harvest RUN && pdc view RUN` shows it without `--harvest`."""
    from pdc.analyze.store import MANIFEST

    stores = [(int(p.name.split("-", 1)[1]), p) for p in run_dir.glob("harvest-*")
              if p.name.split("-", 1)[1].isdigit() and (p / MANIFEST).is_file()]
    return max(stores)[1] if stores else None


__all__ = ["Viewer", "ViewError", "latest_harvest", "open_viewer", "parse_component", "MAX_TEXT", "MAX_TOKENS", "NO_HARVEST"]

