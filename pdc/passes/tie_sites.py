"""Pass 3 — tie sites: `linear2 { tied_to = linear1 }` makes a site share another site's
components, transposed (V = Uᵀ, U = Vᵀ of the source).

The torch reference does this for a tied TMS target (`W2 = W1ᵀ`): `linear2`'s factors are
views of `linear1`'s, so both sites' gradients move one set of weights. Ties are made
between stacks (a site kind, stacked over layers), so both sides must be one site each;
the transposed shapes and C must agree, and a source may not itself be tied."""

from __future__ import annotations

import difflib

from pdc.ir.graph import IR
from pdc.ir.nodes import SiteNode, TieNode
from pdc.syntax.checked import Entry
from pdc.syntax.diagnostics import Diagnostic, Related
from pdc.syntax.span import Span



def run(ir: IR) -> IR:
    decompose = ir.spec.block("decompose")
    assert decompose is not None
    sites = {site.path: site for _, site in ir.nodes(SiteNode)}
    ties = [(entry, entry.value.tied_to) for entry in decompose.entries if entry.value.tied_to is not None]
    tied_paths = {site.path for entry, _ in ties for site in _claimed(entry, sites)}
    for entry, source_path in ties:
        tie = _check(ir, entry, source_path, sites, tied_paths)
        if tie is not None:
            ir.add(f"tie:{tie.kind}", tie, f"site:{tie.site}", f"site:{tie.source}")
    return ir


def _claimed(entry: Entry, sites: dict[str, SiteNode]) -> list[SiteNode]:
    return [site for site in sites.values() if site.span == entry.pattern.span]


def _check(ir: IR, entry: Entry, source_path: str, sites: dict[str, SiteNode],
           tied_paths: set[str]) -> TieNode | None:
    span = entry.key_spans.get("tied_to", entry.span)
    claimed = _claimed(entry, sites)
    source = sites.get(source_path)
    problem = (_unknown(source_path, span, sites) if source is None else
               _not_single(entry, claimed, span) or _stacked(claimed[0], source, sites, span)
               or _mismatch(claimed[0], source, span, tied_paths))
    if problem is not None:
        ir.error(problem)
        return None
    assert source is not None
    return TieNode(claimed[0].path, claimed[0].kind, source.path, source.kind)


def _unknown(path: str, span: Span, sites: dict[str, SiteNode]) -> Diagnostic:
    close = difflib.get_close_matches(path, list(sites), n=1, cutoff=0.5)
    help_ = (f"did you mean `{close[0]}`?",) if close else ()
    return Diagnostic("PD0316", f"`tied_to = {path}` names no decomposed site", span, "not decomposed",
                      help=help_ + ("a site can only share the components of another decomposed site",))


def _not_single(entry: Entry, claimed: list[SiteNode], span: Span) -> Diagnostic | None:
    if len(claimed) == 1:
        return None
    return Diagnostic("PD0316", f"`tied_to` on `{entry.pattern.text}`, which names {len(claimed)} sites",
                      span, "ties one site", help=("write the tied site on its own line, one site per pattern",))


def _stacked(site: SiteNode, source: SiteNode, sites: dict[str, SiteNode],
             span: Span) -> Diagnostic | None:
    for one in (site, source):
        others = [s.path for s in sites.values() if s.kind == one.kind and s.path != one.path]
        if others:
            return Diagnostic("PD0316", f"`{one.path}` is stacked with {len(others)} other `{one.kind}` site(s) "
                              f"(e.g. `{others[0]}`), so it cannot be tied alone", span, "ties a whole stack",
                              help=("ties are made between site kinds that each have one decomposed site",))
    return None


def _mismatch(site: SiteNode, source: SiteNode, span: Span, tied_paths: set[str]) -> Diagnostic | None:
    related = (Related(source.span, f"`{source.path}` is decomposed here"),)
    if source.path == site.path:
        return Diagnostic("PD0316", f"`{site.path}` is tied to itself", span, "ties itself")
    if source.path in tied_paths:
        return Diagnostic("PD0316", f"`{source.path}` is itself tied, so `{site.path}` cannot tie to it", span,
                          "a tied site", related, ("a source keeps its own components: tie each site to an untied one, "
                                                   "and of two sites tied to each other, keep one `tied_to`",))
    if (site.d_in, site.d_out) != (source.d_out, source.d_in):
        return Diagnostic("PD0316", f"`{site.path}` ({site.d_in} → {site.d_out}) is not the transpose of "
                          f"`{source.path}` ({source.d_in} → {source.d_out})", span, "shapes differ", related,
                          ("a tied site reads what its source writes and writes what it reads",))
    if site.C != source.C:
        return Diagnostic("PD0316", f"`{site.path}` has C = {site.C} but `{source.path}`, which it shares "
                          f"components with, has C = {source.C}", site.c_span or span, f"C = {site.C}", related,
                          (f"use C = {source.C} for both",))
    return None
