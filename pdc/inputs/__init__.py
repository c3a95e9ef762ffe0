"""The files a spec names — a target's weights, a token file — read and checked without
JAX, so `pdc check` can open them cheaply before anything compiles."""
