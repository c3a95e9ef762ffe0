"""The mathematics of SPD/VPD as pure JAX functions (SPD_ALGORITHM.md §1–8).

Nothing here knows about specs or the IR: the lowering (`pdc.lower`) assembles these
pieces from the validated IR. Shapes follow the glossary: site inputs `x [*lead, d_in]`,
component activations `x @ V [*lead, C]`, masks `[*lead, C]`, delta masks and routes
`[*lead]`, with `lead = (B,)` for toys and `(B, T)` for LMs.
"""
