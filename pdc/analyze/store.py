"""The harvest store (DESIGN.md §11): what `pdc harvest` writes and `pdc view`, notebooks and
any DuckDB client read. Its schema is public API (docs/harvest.md):

    DIR/manifest.json        run, step, hashes, token file sha256, window range, threshold, k, ...
    DIR/components.parquet   one row per (site, component)
    DIR/examples.parquet     top-k by CI and a uniform reservoir of firing positions, with windows
    DIR/token_pmi.parquet    top and bottom PMI input / output tokens per component
    DIR/neighbors.parquet    each component's most co-active components (manifest names the score)
    DIR/histograms.parquet   per component, counts of CI in the manifest's `histogram_edges`

The manifest's keys (all written by `pdc harvest`): `schema`, `pdc_version`, `run` (the run
directory, absolute), `spec`, `step`, `decomposition_hash`, `runtime_hash`, `token_file`,
`token_sha256`, `seq_len`, `windows` ([first, stop) window indices read in order) and
`positions` ([start, stop) token offsets), `tokens` (positions harvested), `threshold`,
`top_k`, `reservoir_k`, `context` (window radius), `histogram_edges`, `pmi_k`,
`neighbor_k`, `neighbor_score` (the co-activation score's name), `sites` ([{"name", "C"}] in
the run's canonical order), `tokenizer` ({"kind": "bytes"} or {"kind": "tokenizer.json",
"path": ...}: how to decode `tokens`).

`write_store` checks every table against its schema and writes the whole store atomically
(a temporary directory renamed into place), so a reader never sees half a store.
`load_harvest` opens one with DuckDB views named after the tables, for `.sql()`.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

STORE_SCHEMA = "pdc.harvest/1"
MANIFEST = "manifest.json"

SCHEMAS: dict[str, pa.Schema] = {
    "components": pa.schema([
        ("site", pa.string()),
        ("component", pa.int32()),
        ("tokens", pa.int64()),          # tokens seen (positions harvested)
        ("firing", pa.int64()),          # positions where lower CI > threshold
        ("density", pa.float64()),       # firing / tokens
        ("mean_ci", pa.float64()),       # sum of lower CI / tokens
        ("mean_abs_act", pa.float64()),  # sum of |(x·v)·‖u‖| / tokens
        ("alive", pa.bool_()),           # firing > 0
        ("v_norm", pa.float32()),        # ‖v‖ of the component at the harvested step
        ("u_norm", pa.float32()),        # ‖u‖
    ]),
    "examples": pa.schema([
        ("site", pa.string()),
        ("component", pa.int32()),
        ("kind", pa.string()),           # 'top' (by CI, descending) | 'random' (reservoir of firing positions)
        ("rank", pa.int32()),            # 0-based: CI rank for 'top', reservoir slot for 'random'
        ("position", pa.int64()),        # absolute token offset in the token file
        ("center", pa.int32()),          # index of `position` inside the window lists
        ("tokens", pa.list_(pa.int32())),
        ("ci", pa.list_(pa.float32())),  # this component's lower CI over the window
        ("act", pa.list_(pa.float32())), # this component's activation over the window
    ]),
    "token_pmi": pa.schema([
        ("site", pa.string()),
        ("component", pa.int32()),
        ("direction", pa.string()),      # 'input' (token at the firing position) | 'output' (next-token mass)
        ("side", pa.string()),           # 'top' | 'bottom'
        ("rank", pa.int32()),
        ("token", pa.int32()),
        ("count", pa.float64()),         # firing count (input) or probability mass (output)
        ("pmi", pa.float64()),
    ]),
    "neighbors": pa.schema([
        ("site", pa.string()),
        ("component", pa.int32()),
        ("rank", pa.int32()),
        ("other_site", pa.string()),
        ("other_component", pa.int32()),
        ("together", pa.int64()),        # positions where both fire
        ("score", pa.float64()),         # manifest["neighbor_score"] names it
    ]),
    "histograms": pa.schema([
        ("site", pa.string()),
        ("component", pa.int32()),
        ("counts", pa.list_(pa.int64())),  # len(histogram_edges) - 1 bins
    ]),
}
TABLES = tuple(SCHEMAS)
# Rows per Parquet row group. DuckDB skips row groups by their min/max statistics, but decodes
# every page of a list column in a group it reads: one component's 64 example windows must not
# cost decoding a million. Small groups for `examples` (written in (site, component) order, as
# the harvest writes it) keep `pdc view`'s component page fast on an 8B-size store.
ROW_GROUP_ROWS = {"examples": 2048, "token_pmi": 16384, "neighbors": 16384, "histograms": 16384,
                  "components": 16384}


class StoreError(Exception):
    """A directory that is not a harvest store (or not this version of one); `code` is PD08xx."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"error[{code}]: {message}")
        self.code = code
        self.message = message


def table_path(directory: Path, name: str) -> Path:
    return Path(directory) / f"{name}.parquet"


def to_table(name: str, columns: Mapping[str, Any] | pa.Table) -> pa.Table:
    """`columns` (a dict of column → sequence/array, or a table) cast to table `name`'s schema;
    a missing or extra column is a `ValueError` naming it."""
    schema = SCHEMAS[name]
    if isinstance(columns, pa.Table):
        columns = {c: columns.column(c) for c in columns.column_names}
    missing = [f.name for f in schema if f.name not in columns]
    extra = [c for c in columns if c not in schema.names]
    if missing or extra:
        raise ValueError(f"{name}: missing columns {missing}, unknown columns {extra}")
    arrays = [pa.array(columns[f.name], type=f.type) if not isinstance(columns[f.name], (pa.Array, pa.ChunkedArray))
              else columns[f.name].cast(f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_store(directory: str | Path, tables: Mapping[str, Mapping[str, Any] | pa.Table],
                manifest: Mapping[str, Any]) -> Path:
    """Write every table of `SCHEMAS` and the manifest into `directory`, atomically: into a
    sibling temporary directory first, then renamed over `directory` (an existing store there
    is replaced only once the new one is complete)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.writing")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name in TABLES:
        pq.write_table(to_table(name, tables[name]), table_path(tmp, name), compression="zstd",
                       row_group_size=ROW_GROUP_ROWS.get(name))
    body = {"schema": STORE_SCHEMA, **manifest}
    (tmp / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    _replace_dir(tmp, directory)
    return directory


def _replace_dir(new: Path, directory: Path) -> None:
    """Move `new` to `directory`, keeping whatever was there until the move succeeded."""
    old = directory.with_name(f".{directory.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if directory.exists():
        os.replace(directory, old)
    os.replace(new, directory)
    if old.exists():
        shutil.rmtree(old)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of the store in `directory`; `StoreError` PD0801 when there is none."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError("PD0801", f"{directory}: no harvest store here (no {MANIFEST}); "
                                   "make one with `pdc harvest RUN --out DIR`") from None
    except (OSError, ValueError) as error:
        raise StoreError("PD0801", f"{path}: not a harvest manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != STORE_SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else None
        raise StoreError("PD0802", f"{path}: store schema {found!r}, this pdc reads {STORE_SCHEMA!r}")
    return manifest


class _RowGroups:
    """One table's Parquet row groups indexed by their (site, component) min/max statistics, so
    one component's rows are read from the few groups that can hold them (pyarrow, no query
    planning: DuckDB spends ~0.2 s pruning 2,304 groups of an 8B-size `examples` per query). A
    group without statistics is always read, so the answer never depends on them."""

    def __init__(self, path: Path) -> None:
        self.file = pq.ParquetFile(path)
        self.lock = threading.Lock()
        names = self.file.schema_arrow.names
        site, comp = names.index("site"), names.index("component")
        meta = self.file.metadata
        self.bounds: list[tuple[str, str, int, int] | None] = []
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            s, c = group.column(site).statistics, group.column(comp).statistics
            ok = s is not None and c is not None and s.has_min_max and c.has_min_max and isinstance(s.min, str)
            self.bounds.append((s.min, s.max, int(c.min), int(c.max)) if ok else None)  # type: ignore[union-attr]

    def groups(self, site: str, components: Sequence[int]) -> list[int]:
        lo, hi = min(components), max(components)
        return [i for i, b in enumerate(self.bounds)
                if b is None or (b[0] <= site <= b[1] and b[2] <= hi and lo <= b[3])]

    def rows(self, site: str, components: Sequence[int]) -> list[dict[str, Any]]:
        """The rows of `site` whose component is one of `components`, in file order."""
        groups = self.groups(site, components) if components else []
        if not groups:
            return []
        with self.lock:
            table = self.file.read_row_groups(groups)
        wanted = pc.is_in(table["component"], value_set=pa.array(list(components), pa.int32()))
        return table.filter(pc.and_(pc.equal(table["site"], site), wanted)).to_pylist()


SORTABLE = ("component", "tokens", "firing", "density", "mean_ci", "mean_abs_act", "v_norm", "u_norm")


@dataclass
class Harvest:
    """An open harvest store: the common questions as methods (records as dicts, JSON-ready),
    anything else through `.sql(query)` over the views `components`, `examples`, `token_pmi`,
    `neighbors`, `histograms`. Read-only: the DuckDB connection is in-memory and only reads the
    Parquet files. Safe to share between threads (each query runs on its own cursor)."""

    path: Path
    manifest: dict[str, Any]
    _db: duckdb.DuckDBPyConnection = field(repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _groups: dict[str, _RowGroups] = field(default_factory=dict, repr=False)

    # ---- raw access ------------------------------------------------------------------------

    def sql(self, query: str, params: Sequence[Any] | None = None) -> duckdb.DuckDBPyRelation:
        """Run a DuckDB query over the store's views (`.fetchall()`, `.arrow()`, `.df()` on the result)."""
        return self._cursor().sql(query, params=params) if params is not None else self._cursor().sql(query)

    def records(self, query: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """The rows of `query` as dicts (column → Python value)."""
        cursor = self._cursor().execute(query, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            return self._db.cursor()

    def _rows(self, table: str, site: str, components: Sequence[int]) -> list[dict[str, Any]]:
        """One component's (or a few's) rows of `table`, read through its row-group index."""
        with self._lock:
            if table not in self._groups:
                self._groups[table] = _RowGroups(table_path(self.path, table))
            groups = self._groups[table]
        return groups.rows(site, [int(c) for c in components])

    # ---- the common questions --------------------------------------------------------------

    @property
    def sites(self) -> list[str]:
        """Harvested sites in the run's canonical order (as the manifest lists them)."""
        return [s["name"] for s in self.manifest["sites"]]

    def components(self, site: str | None = None, sort: str = "density", descending: bool = True,
                   offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Component rows (of one site, or all), sorted by a column of `SORTABLE`."""
        if sort not in SORTABLE:
            raise ValueError(f"sort by one of {', '.join(SORTABLE)}, not {sort!r}")
        order = f"{sort} {'desc' if descending else 'asc'}, site, component"
        where, params = ("where site = ?", [site]) if site is not None else ("", [])
        page = f" limit {int(limit)}" if limit is not None else ""
        return self.records(f"select * from components {where} order by {order}{page} offset {int(offset)}", params)

    def component(self, site: str, component: int) -> dict[str, Any] | None:
        rows = self._rows("components", site, [component])
        return rows[0] if rows else None

    def examples(self, site: str, component: int, kind: str | None = None) -> list[dict[str, Any]]:
        """A component's example windows ('top' by CI rank, then 'random'); each has `tokens`,
        `ci`, `act` lists and `center`, the index of the example position in them."""
        rows = [r for r in self._rows("examples", site, [component]) if kind is None or r["kind"] == kind]
        return sorted(rows, key=lambda r: (r["kind"] != "top", r["kind"], r["rank"]))

    def pmi(self, site: str, component: int, direction: str = "input") -> list[dict[str, Any]]:
        rows = [r for r in self._rows("token_pmi", site, [component]) if r["direction"] == direction]
        return sorted(rows, key=lambda r: (r["side"] != "top", r["side"], r["rank"]))

    def neighbors(self, site: str, component: int) -> list[dict[str, Any]]:
        return sorted(self._rows("neighbors", site, [component]), key=lambda r: r["rank"])

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Each token id as text, with the tokenizer the manifest names: `bytes` (byte-level
        targets: the byte, UTF-8 decoded leniently), `tokenizer.json` (the HF tokenizers
        library), otherwise the id itself in angle brackets."""
        tokenizer = self.manifest.get("tokenizer", {})
        if tokenizer.get("kind") == "bytes":
            return [bytes([i]).decode("utf-8", "replace") if 0 <= i < 256 else f"<{i}>" for i in ids]
        if tokenizer.get("kind") == "tokenizer.json" and Path(tokenizer.get("path", "")).is_file():
            return [self._tokenizer(tokenizer["path"]).decode([int(i)]) for i in ids]
        return [f"<{int(i)}>" for i in ids]

    def _tokenizer(self, path: str) -> Any:
        from tokenizers import Tokenizer

        cached = getattr(self, "_loaded_tokenizer", None)
        if cached is None:
            cached = Tokenizer.from_file(path)
            object.__setattr__(self, "_loaded_tokenizer", cached)
        return cached

    def decoded_examples(self, site: str, component: int, kind: str | None = None) -> list[dict[str, Any]]:
        """`examples` with `text`: the window's tokens decoded (`decode`)."""
        return [{**e, "text": self.decode(e["tokens"])} for e in self.examples(site, component, kind)]

    def histogram(self, site: str, component: int) -> tuple[list[float], list[int]]:
        """(bin edges, counts) of a component's CI histogram."""
        rows = self._rows("histograms", site, [component])
        return list(self.manifest["histogram_edges"]), (rows[0]["counts"] if rows else [])

    def count(self, site: str) -> int:
        """How many components `site` has in the store."""
        return int(self.records("select count(*) as n from components where site = ?", [site])[0]["n"])

    def histograms(self, site: str, components: Sequence[int]) -> dict[int, list[int]]:
        """component → CI histogram counts, for many components of one site in one query (a page)."""
        return {r["component"]: r["counts"] for r in self._rows("histograms", site, components)}

    def search(self, tokens: Sequence[int], limit: int = 50) -> list[dict[str, Any]]:
        """The components that fire most on any of `tokens`: their top input-PMI rows for those
        tokens, by firing count (then PMI), with the component's density and mean CI."""
        if not tokens:
            return []
        marks = ", ".join("?" for _ in tokens)
        return self.records(
            "select p.site, p.component, p.token, p.count, p.pmi, c.density, c.mean_ci from token_pmi p "
            "join components c on c.site = p.site and c.component = p.component "
            f"where p.direction = 'input' and p.side = 'top' and p.token in ({marks}) "
            f"order by p.count desc, p.pmi desc, p.site, p.component limit {int(limit)}", [*map(int, tokens)])


def load_harvest(directory: str | Path) -> Harvest:
    """Open the harvest store in `directory` (`StoreError` when it is not one)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    missing = [n for n in TABLES if not table_path(directory, n).is_file()]
    if missing:
        raise StoreError("PD0803", f"{directory}: incomplete store, missing {', '.join(missing)}")
    db = duckdb.connect(":memory:")
    for name in TABLES:
        path = str(table_path(directory, name).resolve()).replace("'", "''")
        db.execute(f"create view {name} as select * from read_parquet('{path}')")
    return Harvest(directory, manifest, db)


def iter_tables() -> Iterator[tuple[str, pa.Schema]]:
    """(name, schema) of every store table, in the documented order."""
    return iter(SCHEMAS.items())
