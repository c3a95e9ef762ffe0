"""`pdc view` (docs/view.md): the JSON API and pages over a harvested tiny_llama run (a
step-0 checkpoint, a real harvest of it by `view_helpers.harvest`) and over a synthetic store,
through Starlette's TestClient; the CLI's defaults and the loopback check. The browser half is
tests/test_view_browser.py (`pytest -m browser`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

import pdc
from pdc.analyze.store import load_harvest
from pdc.analyze.synthetic import synthetic_store
from pdc.analyze.tokens import Decoder
from pdc.analyze.view import DEFAULT_HOST, is_loopback, make_app, open_viewer, server_config
from pdc.cli import build_parser

from view_helpers import corpus_bytes, harvest, tiny_run

TEXT = "def decode(self, s, _w=WHITESPAC"  # SEQ = 32 bytes: the probe reuses the harvest's compiled CI


@pytest.fixture(scope="module")
def harvested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """(run dir, store dir, the loaded run) of one step-0 tiny_llama run and its harvest."""
    base = tmp_path_factory.mktemp("view")
    run_dir = tiny_run(base, steps=0)
    run = pdc.load_run(run_dir)
    return run_dir, harvest(run, base / "harvest"), run


@pytest.fixture(scope="module")
def live(harvested: tuple[Path, Path, object]) -> object:
    """One `Live` of the fixture's run for every test: loading and compiling it again costs seconds."""
    from pdc.analyze.live import Live

    return Live(harvested[2])  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(harvested: tuple[Path, Path, object], live: object) -> TestClient:
    run_dir, store, _ = harvested
    viewer = open_viewer(run_dir, store)
    viewer.live = live
    return TestClient(make_app(viewer))


def test_api_sites_lists_the_runs_sites(client: TestClient, harvested: tuple[Path, Path, object]) -> None:
    body = client.get("/api/sites").json()
    run = harvested[2]
    assert sorted(s["name"] for s in body["sites"]) == sorted(run.sites)  # type: ignore[attr-defined]
    assert all(s["C"] == 16 and s["harvest_alive"] is not None for s in body["sites"])


def test_component_examples_decode_to_the_corpus_at_their_positions(client: TestClient) -> None:
    corpus = corpus_bytes()
    site = client.get("/api/sites").json()["sites"][0]["name"]
    checked = 0
    for component in (0, 5, 15):
        body = client.get(f"/api/components/{site}/{component}").json()
        assert body["component"]["component"] == component
        for ex in body["examples"]:
            start = ex["position"] - ex["center"]
            window = corpus[start:start + len(ex["tokens"])]
            assert ex["tokens"] == list(window)
            assert ex["text"] == window.decode("utf-8", errors="replace")
            assert ex["tokens"][ex["center"]] == corpus[ex["position"]]
            assert len(ex["ci"]) == len(ex["act"]) == len(ex["pieces"]) == len(ex["tokens"])
            checked += 1
    assert checked >= 3 * 4  # at least the top-k examples of each


def test_component_page_has_pmi_neighbors_and_histogram(client: TestClient) -> None:
    site = client.get("/api/sites").json()["sites"][1]["name"]
    body = client.get(f"/api/components/{site}/3").json()
    assert body["neighbors"] and all(n["other_site"] for n in body["neighbors"])
    assert sum(body["histogram"]["counts"]) == 4 * 32  # every harvested position in one bin
    html = client.get(f"/component/{site}/3").text
    assert 'class="tok center"' in html and "pmi-input" in html


def test_probe_equals_run_ci_for_the_same_tokens(client: TestClient, harvested: tuple[Path, Path, object]) -> None:
    run = harvested[2]
    ids = list(TEXT.encode())
    expected = run.ci(np.asarray([ids], np.int32))  # type: ignore[attr-defined]
    body = client.post("/api/probe", json={"text": TEXT}).json()
    assert body["tokens"] == ids
    for site in body["sites"]:
        got = np.asarray(site["ci"], np.float32)  # [components, T]
        want = expected[site["site"]][0][:, site["components"]].T
        np.testing.assert_array_equal(got, want)
        top = np.argsort(-expected[site["site"]][0].max(axis=0), kind="stable")[:8]
        assert site["components"] == top.tolist()
    chosen = client.post("/api/probe", json={"text": TEXT, "site": run.sites[2], "components": [1, 7]}).json()
    np.testing.assert_array_equal(np.asarray(chosen["sites"][0]["ci"], np.float32),
                                  expected[run.sites[2]][0][:, [1, 7]].T)


def test_ablate_nothing_is_the_clean_distribution(client: TestClient, harvested: tuple[Path, Path, object]) -> None:
    run = harvested[2]
    ids = np.asarray([list(TEXT.encode())], np.int32)
    logits = np.asarray(run.program.target.clean(run.params, ids).output[0, -1], np.float64)  # type: ignore[attr-defined]
    clean = np.exp(logits - logits.max())
    clean /= clean.sum()
    body = client.post("/api/ablate", json={"text": TEXT, "ablate": [], "full": True}).json()
    np.testing.assert_allclose(body["clean"], clean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(body["ablated"], clean, rtol=1e-4, atol=1e-6)
    assert body["kl"] < 1e-6
    site = run.sites[0]
    out = client.post("/api/ablate", json={"text": TEXT, "ablate": [{"site": site, "component": 3},
                                                                    {"site": site, "component": 4}], "full": True}).json()
    np.testing.assert_allclose(out["clean"], clean, rtol=1e-5, atol=1e-7)
    assert out["kl"] > 0 and abs(sum(out["ablated"]) - 1) < 1e-4
    assert out["ablated_components"] == [{"site": site, "component": 3}, {"site": site, "component": 4}]


def test_ablation_removes_the_components_from_the_weight(harvested: tuple[Path, Path, object], live: object) -> None:
    """Ablating every component of a site leaves that site's faithfulness residual W − VU:
    the masked forward equals the clean forward with W replaced by W − VU there (NumPy)."""
    import jax.numpy as jnp

    from pdc.run.evaluate import site_paths

    run = harvested[2]
    site = run.sites[0]  # type: ignore[attr-defined]
    ids = list(TEXT.encode())
    _, ablated = live.next_token(ids, {site: list(range(16))})  # type: ignore[attr-defined]
    kind = next(k for k, paths in site_paths(run.ir).items() if site in paths)  # type: ignore[attr-defined]
    index = site_paths(run.ir)[kind].index(site)  # type: ignore[attr-defined]
    V, U = run.components(site)  # type: ignore[attr-defined]
    params = run.params  # type: ignore[attr-defined]
    layer = int(site.split(".")[1])
    stacked = np.asarray(params["layers"][kind]).copy()
    assert np.allclose(stacked[layer], run.weights(site))  # type: ignore[attr-defined]
    stacked[layer] = stacked[layer] - V @ U
    edited = {**params, "layers": {**params["layers"], kind: jnp.asarray(stacked)}}
    logits = np.asarray(run.program.target.clean(edited, jnp.asarray([ids])).output[0, -1], np.float64)  # type: ignore[attr-defined]
    want = np.exp(logits - logits.max())
    np.testing.assert_allclose(ablated, want / want.sum(), rtol=1e-4, atol=1e-6)
    assert 0 <= index < len(site_paths(run.ir)[kind])  # type: ignore[attr-defined]


def test_unknown_site_component_and_traversals_are_404_json(client: TestClient) -> None:
    site = client.get("/api/sites").json()["sites"][0]["name"]
    for url in (f"/api/components/{site}/999999", "/api/components/nope/1", f"/api/components/{site}/-1",
                f"/api/components/{site}/1e3", "/api/..%2f..%2fetc%2fpasswd", "/api/../../etc/passwd",
                "/static/..%2f..%2f..%2fcli.py", "/static/%2e%2e/app.py", "/api/sites/nope/components",
                "/component/..%2f..%2fetc/passwd"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"] == "application/json" and response.json()["status"] == 404, url


def test_big_bodies_and_texts_are_refused_with_json(client: TestClient) -> None:
    assert client.post("/api/probe", content=b"x" * 100_000).status_code == 413
    assert client.post("/api/probe", json={"text": "x" * 5000}).status_code == 413
    assert client.post("/api/probe", json={"text": "x" * 600}).status_code == 413  # over the token limit
    for body in ({"text": ""}, {"text": 3}, {"text": TEXT, "components": [1]}, {"text": TEXT, "site": 3}):
        response = client.post("/api/probe", json=body)
        assert response.status_code == 422 and "error" in response.json(), body
    assert client.post("/api/probe", content=b"{nope").status_code == 422
    assert client.post("/api/ablate", json={"text": TEXT, "ablate": [{"site": "x", "component": 1}]}).status_code == 404
    assert client.post("/api/ablate", json={"text": TEXT, "ablate": [{"site": "x"}]}).status_code == 422
    assert client.get("/api/probe").status_code == 405 and client.get("/api/probe").json()["status"] == 405


def test_pages_render(client: TestClient) -> None:
    run = client.get("/").text
    assert "decomposition hash" in run and "Resolved spec" in run and "provenance" in run
    site = client.get("/api/sites").json()["sites"][0]["name"]
    page = client.get(f"/site/{site}?sort=mean_ci&order=asc&limit=5").text
    assert page.count('class="component-link"') == 5 and "<svg class=\"spark\"" in page
    assert client.get(f"/site/{site}?sort=nonsense").status_code == 422
    for url in ("/probe", "/ablate", "/search?q=self", "/healthz", "/static/view.js", "/static/view.css"):
        assert client.get(url).status_code == 200, url


def test_site_sorting_and_paging_follow_duckdb(client: TestClient, harvested: tuple[Path, Path, object]) -> None:
    store = load_harvest(harvested[1])
    site = store.sites[0]
    body = client.get(f"/api/sites/{site}/components?sort=mean_ci&order=asc&offset=4&limit=5").json()
    values = sorted(r["mean_ci"] for r in store.components(site))
    assert [r["mean_ci"] for r in body["components"]] == values[4:9]
    assert body["total"] == 16 and all(len(r["histogram"]) == len(store.manifest["histogram_edges"]) - 1 for r in body["components"])


def test_search_finds_components_firing_on_a_token(client: TestClient) -> None:
    body = client.get("/api/search?q=s").json()
    assert body["tokens"] == [{"id": ord("s"), "piece": "s"}]
    assert all(r["token"] == ord("s") for r in body["components"])
    assert client.get("/api/search?q=").status_code == 422


def test_without_a_harvest_run_probe_and_ablate_work(harvested: tuple[Path, Path, object], live: object) -> None:
    viewer = open_viewer(harvested[0])
    viewer.live = live
    client = TestClient(make_app(viewer))
    assert client.get("/").status_code == 200 and "pdc harvest" in client.get("/").text
    assert client.post("/api/probe", json={"text": TEXT}).status_code == 200
    assert client.post("/api/ablate", json={"text": TEXT, "ablate": []}).status_code == 200
    site = viewer.site_names[0]
    for url in (f"/api/sites/{site}/components", f"/api/components/{site}/1", "/api/search?q=a"):
        response = client.get(url)
        assert response.status_code == 404 and "pdc harvest" in response.json()["error"], url
    assert "pdc harvest" in client.get(f"/site/{site}").text and "pdc harvest" in client.get("/search").text


def test_the_default_bind_is_loopback() -> None:
    args = build_parser().parse_args(["view", "RUN"])
    assert (args.host, args.port, args.harvest) == ("127.0.0.1", 8000, None) and DEFAULT_HOST == "127.0.0.1"
    assert server_config(object()).host == "127.0.0.1"  # type: ignore[attr-defined]
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("::")


def test_on_loopback_only_loopback_host_names_are_answered(harvested: tuple[Path, Path, object]) -> None:
    """A page elsewhere cannot reach the viewer through a DNS name rebound to 127.0.0.1."""
    from pdc.analyze.view.app import LOOPBACK_NAMES

    client = TestClient(make_app(open_viewer(harvested[0]), hosts=LOOPBACK_NAMES), base_url="http://127.0.0.1:8000")
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/healthz", headers={"host": "[::1]:8000"}).status_code == 200
    refused = client.get("/api/sites", headers={"host": "evil.example:8000"})
    assert refused.status_code == 400 and refused.json()["status"] == 400


def test_a_non_loopback_host_warns(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                   harvested: tuple[Path, Path, object]) -> None:
    import uvicorn

    served: list[str] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: served.append(self.config.host))
    from pdc.cli import main

    assert main(["view", str(harvested[0]), "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert main(["view", str(harvested[0])]) == 0
    captured = capsys.readouterr()
    assert "warning: serving on 0.0.0.0" in captured.err and served == ["0.0.0.0", "127.0.0.1"]
    assert "http://127.0.0.1:8000/" in captured.out and "http://0.0.0.0:8123/" in captured.out


def test_view_of_a_missing_run_or_store_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    harvested: tuple[Path, Path, object]) -> None:
    from pdc.cli import main

    assert main(["view", str(tmp_path / "nope")]) == 2
    assert main(["view", str(harvested[0]), "--harvest", str(tmp_path)]) == 1
    assert "PD0801" in capsys.readouterr().err


def test_synthetic_store_serves_a_site_page_and_a_component(tmp_path: Path,
                                                            harvested: tuple[Path, Path, object]) -> None:
    run = harvested[2]
    store = synthetic_store(tmp_path / "syn", run.sites, C=16, top_k=3, reservoir_k=2, context=3)  # type: ignore[attr-defined]
    client = TestClient(make_app(open_viewer(harvested[0], store)))
    site = run.sites[0]  # type: ignore[attr-defined]
    body = client.get(f"/api/sites/{site}/components?sort=density&limit=4").json()
    densities = [r["density"] for r in body["components"]]
    assert densities == sorted(densities, reverse=True) and len(densities) == 4
    component = client.get(f"/api/components/{site}/2").json()
    assert [e["kind"] for e in component["examples"]] == ["top"] * 3 + ["random"] * 2
    assert all(len(e["tokens"]) == 7 and e["ci"][3] == max(e["ci"]) for e in component["examples"])
    assert json.loads(json.dumps(component)) == component  # strict JSON


def test_decoder_bytes_and_ids() -> None:
    bytes_ = Decoder({"kind": "bytes"})
    assert bytes_.encode("hé") == [104, 195, 169] and bytes_.text([104, 195, 169]) == "hé"
    assert bytes_.pieces([104, 10, 200]) == ["h", "\\n", "\\xc8"]
    assert Decoder({"kind": "ids"}).pieces([5]) == ["#5"]


def test_row_group_lookups_equal_duckdb_queries(tmp_path: Path) -> None:
    """`Harvest`'s per-component reads (pyarrow through the row groups' statistics) return what
    the same DuckDB query does, across row-group boundaries and without statistics."""
    import pyarrow.parquet as pq

    sites = ["a.x", "a.y", "b.z"]
    store = load_harvest(synthetic_store(tmp_path / "s", sites, C=64, top_k=3, reservoir_k=2, context=2))
    assert store._rows("examples", "a.x", [0]) and pq.ParquetFile(tmp_path / "s" / "examples.parquet").num_row_groups == 1
    table = pq.read_table(tmp_path / "s" / "examples.parquet")
    pq.write_table(table, tmp_path / "s" / "examples.parquet", row_group_size=37)  # boundaries inside components
    pq.write_table(pq.read_table(tmp_path / "s" / "token_pmi.parquet"), tmp_path / "s" / "token_pmi.parquet",
                   write_statistics=False, row_group_size=100)
    store = load_harvest(tmp_path / "s")
    for site, c in (("a.x", 0), ("a.y", 17), ("b.z", 63), ("a.y", 36)):
        want = store.records("select * from examples where site = ? and component = ? order by kind desc, rank",
                             [site, c])
        assert store.examples(site, c) == want and len(want) == 5
        for direction in ("input", "output"):
            assert store.pmi(site, c, direction) == store.records(
                "select * from token_pmi where site = ? and component = ? and direction = ? order by side desc, rank",
                [site, c, direction])
        assert store.neighbors(site, c) == store.records(
            "select * from neighbors where site = ? and component = ? order by rank", [site, c])
        assert store.component(site, c) == store.records(
            "select * from components where site = ? and component = ?", [site, c])[0]
    assert store.component("a.x", 64) is None and store.examples("zz", 1) == []
    page = store.histograms("a.y", [3, 40, 63])
    assert sorted(page) == [3, 40, 63] and page[40] == store.histogram("a.y", 40)[1]


def test_pdc_view_finds_the_latest_default_harvest_of_the_run(tmp_path: Path) -> None:
    """`pdc harvest RUN` writes RUN/harvest-<step>; `pdc view RUN` then needs no --harvest."""
    from pdc.analyze.view.data import latest_harvest

    assert latest_harvest(tmp_path) is None
    for name in ("harvest-3", "harvest-10", "harvest-20", "harvest-x"):
        (tmp_path / name).mkdir()
    for name in ("harvest-3", "harvest-10", "harvest-x"):
        (tmp_path / name / "manifest.json").write_text("{}")
    assert latest_harvest(tmp_path) == tmp_path / "harvest-10"  # harvest-20 is unfinished (no manifest)
