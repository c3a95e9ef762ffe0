"""Analysis beside training (DESIGN.md §11): the harvest runner, its columnar store and the
`pdc view` server. Imports `lower`, `inspect`, `run` and below; nothing below imports it."""
