"""Every diagnostic code pdc emits, with a one-line title for the docs index.

Ranges: PD00xx reading files, PD01xx syntax, PD02xx the registry (blocks, keys,
values), PD03xx the IR passes (sites, shapes, sharding), PD04xx the input files a spec names
(weights, tokens: `pdc check` and `pdc train` exit 1 on them), PD05xx the dry-run, PD06xx spec
families (imports, parameters, sweeps), PD07xx `pdc migrate` (in `RUN_CODES`: they are about a
run directory and a spec together, so no spec alone shows them and they have no golden case;
`tests/test_migrate.py` makes each one).
`docs/diagnostics.md` is generated from this table and the golden cases in
`tests/golden/`; a test fails when a code has no golden case.
"""

from __future__ import annotations

CODES: dict[str, str] = {
    "PD0001": "the spec file cannot be read (missing, too large, or not UTF-8)",
    "PD0002": "brackets nested too deep",
    "PD0101": "unexpected character",
    "PD0102": "unexpected token (a missing `=`, value, `,` or key)",
    "PD0103": "unexpected end of file (an unclosed block or list)",
    "PD0104": "unterminated string",
    "PD0105": "malformed site pattern (empty range, empty alternative)",
    "PD0106": "invalid number literal",
    "PD0201": "unknown block (or a key written as a block)",
    "PD0202": "unknown key (or a block written as a key)",
    "PD0203": "a key, block or entry defined twice",
    "PD0204": "a required key is missing",
    "PD0205": "a required block is missing or empty",
    "PD0206": "a value of the wrong type",
    "PD0207": "a value out of range",
    "PD0208": "an unknown name where one of a fixed set is expected",
    "PD0209": "an unknown unit, or a unit that does not apply to the key",
    "PD0210": "an unknown label (target family, data kind, CI network)",
    "PD0211": "a block that needs a label has none",
    "PD0212": "a label on a block that takes none",
    "PD0214": "a malformed call (unknown function or argument, too many arguments)",
    "PD0215": "not exactly one `spec NAME { ... }` block in the file",
    "PD0216": "a site pattern where a plain name is required",
    "PD0217": "a list of the wrong length",
    "PD0301": "the target cannot be resolved (config.json unreadable or incomplete, inconsistent dimensions)",
    "PD0303": "a site pattern matches no matrix of the target (or no decomposed site)",
    "PD0304": "two site patterns claim the same matrix",
    "PD0305": "sites of one kind have different C (they are stacked over layers)",
    "PD0306": "the decomposed layers do not split into CI chunks of `blocks_per_chunk`",
    "PD0307": "CI chunks are not homogeneous (input width or Σ C differ)",
    "PD0308": "a CI network that needs positions on a target that has none",
    "PD0309": "a CI transformer's head width is not even",
    "PD0310": "a sharded dimension is not divisible by its mesh axes",
    "PD0311": "not exactly one importance-minimality term",
    "PD0312": "no reconstruction term",
    "PD0313": "a schedule out of range",
    "PD0314": "an adversary scope that is invalid for the target",
    "PD0315": "an option or eval metric that is invalid for the target",
    "PD0316": "a `tied_to` that cannot tie (unknown or stacked site, shapes not transposed, C differs, chained)",
    "PD0317": "(warning) a frequency term's `reference_tokens` fixed at another number than the step's tokens",
    "PD0320": "a tensor that matches no shard rule",
    "PD0321": "a shard rule shadowed by earlier rules",
    "PD0322": "one mesh axis used for two dimensions of a tensor",
    "PD0323": "a shard rule names an axis the mesh does not have",
    "PD0324": "a shard rule with more entries than the tensor has dimensions",
    "PD0325": "attention heads or key/value heads not divisible by the tensor-parallel degree",
    "PD0326": "(warning) a shard rule splits a stacked layer axis that the scan reads one slice at a time",
    "PD0327": "a sharding preset that would leave most of its tensors replicated (no dimension divides the axis)",
    "PD0328": "a site pattern names layer indices the target does not have",
    "PD0329": "a target with neither `weights` nor a `pretrain` block",
    "PD0330": "a target dimension written in the spec (or by `--set`) that its config.json contradicts",
    "PD0401": "the weights a spec names cannot be opened (missing path, unreadable file or index)",
    "PD0402": "a tensor the target needs is missing from its weights",
    "PD0403": "a weight tensor has the wrong shape (transposed, or another model size)",
    "PD0404": "a weight tensor is not floating-point (I32, BOOL, ...)",
    "PD0405": "the weights hold a tensor the target does not have (another architecture or naming)",
    "PD0406": "the target's config.json describes a model pdc cannot run (RoPE type, activation, biases)",
    "PD0407": "(warning) the weights are stored wider than the `target.dtype` default (f32 weights, bf16 run): "
              "they are rounded unless `dtype` is written",
    "PD0420": "the token file cannot be read (missing, not a regular file, no permission)",
    "PD0421": "the token file does not match its `format` (an .npy header that does not parse or holds non-integers, "
              "a raw length that is not a whole number of ids, an .npy read as raw)",
    "PD0422": "too few tokens for one batch: fewer than `batch` rows of `seq_len`",
    "PD0423": "token ids outside the target's vocabulary (the message gives the largest id and the first offset)",
    "PD0424": "the token file's sidecar (`<file>.json`) cannot be read or is not a `pdc.tokens/1` document",
    "PD0425": "the sidecar's dtype differs from the `format` the spec reads the file as",
    "PD0426": "the sidecar's token count differs from the file's (truncated, appended to, another build's sidecar)",
    "PD0427": "the file was made with a tokenizer of more ids than the target's vocabulary",
    "PD0428": "the file was made with another tokenizer than the target's (tokenizer.json sha256 differs)",
    "PD0601": "an import cycle (a file imports itself, directly or through other files)",
    "PD0602": "a parameter used (`$name`) or bound (`params { name = ... }`) but never declared",
    "PD0603": "an import outside the project root (the nearest directory above the spec holding .git, "
              "pyproject.toml or pdc.toml)",
    "PD0604": "a parameter declared twice in one family (an importer's declaration would shadow its import's)",
    "PD0605": "(warning) a parameter declared but never used",
    "PD0606": "an imported file that cannot be read, or holds no `spec` or `base` block",
    "PD0607": "a malformed `param` declaration or `params` binding (no type or default, a value of another type)",
    "PD0610": "a malformed sweep (not `grid`/`zip` blocks of lists, `zip` lists of different lengths)",
}

RUN_CODES: dict[str, str] = {
    "PD0701": "`pdc migrate`: the new spec's target differs from the old run's (another model, config or weights)",
    "PD0702": "`pdc migrate`: a site's C shrinks, or a decomposed matrix is no longer decomposed: trained components "
              "would be lost",
    "PD0703": "`pdc migrate`: a state leaf cannot be carried (its shape or dtype changed in a way C growth and "
              "restacking do not explain: another CI network, another parameter precision)",
    "PD0704": "`pdc migrate`: the old run cannot be read (no run directory, no complete checkpoint)",
    "PD0705": "`pdc migrate`: verification failed: a carried leaf of the written checkpoint differs from its source, "
              "or the carried blocks do not cover the old state exactly once",
    "PD0706": "`pdc migrate`: the copy cannot start (the output directory is not empty, or one leaf needs more host "
              "RAM than `--max-ram`)",
}

# PD044x: what this machine must have installed for the spec (an optional extra): a golden case
# cannot show them (they depend on the environment, not the spec); tests/test_wandb.py makes each.
ENVIRONMENT_CODES: dict[str, str] = {
    "PD0440": "a `log { wandb }` block while the optional `wandb` package is not installed "
              "(`pip install 'pdc[wandb]'`); a warning for `pdc check`, an error for `pdc train`",
}

# PD08xx: the analysis half (`pdc harvest`, its store, `pdc view`): about a run directory, a token
# file and a store together, so no spec alone shows them; the analysis tests make each one.
ANALYZE_CODES: dict[str, str] = {
    "PD0801": "a directory that holds no harvest store (no readable manifest.json)",
    "PD0802": "a harvest store of another schema version than this pdc reads",
    "PD0803": "an incomplete harvest store (a table file missing)",
    "PD0810": "`pdc harvest`: the run cannot be harvested (not a run directory, no checkpoint, no checkpoint at "
              "`--step`)",
    "PD0811": "`pdc harvest`: `--out` holds something else (another run's, step's or settings' harvest, or not a "
              "store): nothing is written over",
    "PD0812": "`pdc harvest`: the windows asked for pass the token file's end (or the run's data is no token "
              "stream)",
    "PD0813": "`pdc harvest`: a `--set` that changes what the run trained (only runtime keys, `data.batch` and "
              "`eval.*` may change), or the overridden spec does not check",
    "PD0814": "`pdc harvest`: the `--out`'s checkpoint directory holds an unfinished harvest with other settings",
}
