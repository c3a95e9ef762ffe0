"""`target`: the frozen model to decompose (SPD_ALGORITHM.md §8).

Shapes come from these keys or from an HF `config.json`, never from weights, so a
dry-run of an 8B target reads no weight file. Weights come from `weights` or are
trained by the optional `pretrain` block (cached by the target's hash).
"""

from __future__ import annotations

from typing import Literal, Optional

from pdc.registry.schema import BlockSchema, LabelKind, Layout
from pdc.registry.types import Dtype, FilePath, Fraction, Keys, Schedule, Steps, key


class PretrainToy(Keys):
    """Train a toy target from scratch (TMS / ResidMLP recipes)."""

    steps: Steps = key(10_000, doc="optimizer steps", ge=1)
    batch: int = key(1024, doc="examples per step", ge=1)
    lr: Schedule = key(Schedule.constant_of(5e-3), doc="AdamW learning rate")
    weight_decay: float = key(0.01, doc="AdamW weight decay", ge=0.0)
    seed: int = key(0, doc="initialisation and data seed", ge=0)
    feature_probability: Optional[Fraction] = key(None, doc="data sparsity; default: the `data` block's", gt=0.0, le=1.0)
    init_bias_to_zero: bool = key(False, doc="start the biases at zero (TMS: `b2`; ResidMLP: the MLP biases)")


class PretrainLM(Keys):
    """Train a small language model from scratch on a local corpus (no downloads)."""

    corpus: Literal["python_stdlib"] = key("python_stdlib", doc="text present on every machine: the Python standard library's sources")
    tokenizer: Literal["bytes"] = key("bytes", doc="byte-level tokens (vocab 256)")
    steps: Steps = key(2000, doc="optimizer steps", ge=1)
    batch: int = key(32, doc="sequences per step", ge=1)
    seq_len: int = key(256, doc="tokens per sequence", ge=2)
    lr: Schedule = key(Schedule(fn="cosine", start=3e-3, final=0.1), doc="AdamW learning rate")
    weight_decay: float = key(0.0, doc="AdamW weight decay", ge=0.0)
    seed: int = key(0, doc="initialisation and data seed", ge=0)


def _pretrain(model: type[Keys], doc: str) -> BlockSchema:
    return BlockSchema("pretrain", doc, keys=model, layout=Layout.EXPANDED)


class TmsKeys(Keys):
    """Toy Model of Superposition: `out = ReLU(W2 (W1 x) + b2)`, optionally tied."""

    features: int = key(doc="number of input features (n_features)", ge=1)
    hidden: int = key(doc="bottleneck width (n_hidden)", ge=1)
    hidden_layers: int = key(0, doc="identity hidden layers between linear1 and linear2 (the +ID variants)", ge=0)
    tied: bool = key(True, doc="W2 = W1ᵀ in the target (tie the decomposition with `linear2 { tied_to = linear1 }`)")
    weights: Optional[FilePath] = key(None, doc="safetensors file in torch nn.Linear layout; else `pretrain`")


class ResidMlpKeys(Keys):
    """Residual MLP: `r = x W_E; r += W_out act(W_in r); out = r W_U`."""

    features: int = key(doc="number of input features", ge=1)
    d_embed: int = key(doc="residual width", ge=1)
    d_mlp: int = key(doc="MLP width per layer", ge=1)
    layers: int = key(1, doc="number of MLP layers", ge=1)
    embedding: Literal["random", "identity"] = key("random", doc="fixed W_E: random unit rows, or I (needs features = d_embed)")
    activation: Literal["relu", "gelu"] = key("relu", doc="MLP non-linearity")
    bias: bool = key(False, doc="MLP biases (never decomposed)")
    weights: Optional[FilePath] = key(None, doc="safetensors file; else `pretrain`")


class LlamaKeys(Keys):
    """Llama-family LM (RMSNorm, RoPE, GQA, SwiGLU). Dimensions and forward settings come
    from an HF `config.json` (`config`, or the one in the `weights` directory) or are written
    inline for small models. A key written here (or set by `--set`) wins over config.json's
    value; a dimension that contradicts config.json is an error (PD0330). `pdc check --plan`
    lists every setting with where it came from."""

    config: Optional[FilePath] = key(None, doc="HF-format config.json; default: `config.json` in the `weights` "
                                               "directory, if there; or give the dimensions below")
    weights: Optional[FilePath] = key(None, doc="safetensors file or directory of shards with an index")
    dtype: Dtype = key("bf16", doc="dtype the frozen weights are held in (weights stored wider are rounded: "
                                   "PD0407 warns when this is left at its default)")
    vocab: Optional[int] = key(None, doc="vocabulary size", ge=1)
    hidden: Optional[int] = key(None, doc="residual width (hidden_size)", ge=1)
    intermediate: Optional[int] = key(None, doc="MLP width (intermediate_size)", ge=1)
    layers: Optional[int] = key(None, doc="number of transformer blocks", ge=1)
    heads: Optional[int] = key(None, doc="attention heads", ge=1)
    kv_heads: Optional[int] = key(None, doc="key/value heads (GQA); default: heads", ge=1)
    head_dim: Optional[int] = key(None, doc="per-head width; default: hidden / heads", ge=1)
    rope_theta: float = key(500_000.0, doc="RoPE base; default: config.json's, else this", gt=0.0)
    rms_norm_eps: float = key(1e-5, doc="RMSNorm epsilon; default: config.json's, else this", gt=0.0)
    tied_embeddings: bool = key(False, doc="lm_head shares the embedding matrix; default: config.json's "
                                           "`tie_word_embeddings`, else this")
    max_positions: int = key(8192, doc="longest sequence the RoPE tables cover", ge=1)


class SimpleMlpKeys(LlamaKeys):
    """LlamaSimpleMLP (GPT-2 module tree `h.{i}`): rotary GQA attention and a
    `c_fc → GELU(tanh) → down_proj` MLP, tied embeddings."""

    rope_theta: float = key(10_000.0, doc="RoPE base", gt=0.0)
    rms_norm_eps: float = key(1e-6, doc="RMSNorm epsilon", gt=0.0)
    tied_embeddings: bool = key(True, doc="lm_head shares the embedding matrix")


class Gpt2Keys(Keys):
    """GPT-2 (HF `GPT2LMHeadModel`): learned position embeddings, LayerNorm with bias, fused
    `c_attn` (decomposed as its q/k/v column blocks `h.{i}.attn.c_attn.{q,k,v}`), tanh-GELU MLP
    `h.{i}.mlp.{c_fc, c_proj}`, tied head; every bias stays frozen. Dimensions and forward
    settings come from the checkpoint's `config.json` (`config`, or the one in the `weights`
    directory) or are written inline, under config.json's names. A key written here (or set by
    `--set`) wins over config.json's value; a dimension that contradicts it is an error
    (PD0330)."""

    config: Optional[FilePath] = key(None, doc="HF-format config.json; default: `config.json` in the `weights` "
                                               "directory, if there; or give the dimensions below")
    weights: Optional[FilePath] = key(None, doc="safetensors file or directory (as `save_pretrained` writes it, "
                                                "`transformer.h.0...`, or as the hub's `gpt2` stores it, `h.0...`)")
    dtype: Dtype = key("bf16", doc="dtype the frozen weights are held in (weights stored wider are rounded: "
                                   "PD0407 warns when this is left at its default)")
    vocab: Optional[int] = key(None, doc="vocabulary size (vocab_size)", ge=1)
    n_embd: Optional[int] = key(None, doc="residual width", ge=1)
    n_layer: Optional[int] = key(None, doc="number of transformer blocks", ge=1)
    n_head: Optional[int] = key(None, doc="attention heads (n_embd / n_head per head)", ge=1)
    n_inner: Optional[int] = key(None, doc="MLP width; default: config.json's, else 4 × n_embd", ge=1)
    n_positions: Optional[int] = key(None, doc="rows of the learned position table: the longest sequence", ge=1)
    layer_norm_epsilon: float = key(1e-5, doc="LayerNorm epsilon; default: config.json's, else this", gt=0.0)
    activation_function: Literal["gelu_new", "gelu_pytorch_tanh", "gelu"] = key(
        "gelu_new", doc="MLP non-linearity: tanh-GELU (`gelu_new`, `gelu_pytorch_tanh`) or exact `gelu`; "
                        "default: config.json's, else this")


def _family(name: str, model: type[Keys], pretrain: BlockSchema, doc: str) -> BlockSchema:
    return BlockSchema(name, doc, keys=model, children=(pretrain,), layout=Layout.EXPANDED)


_TOY = _pretrain(PretrainToy, "Train the toy target in-process before decomposing.")
_LM = _pretrain(PretrainLM, "Pretrain a tiny LM on a local corpus before decomposing.")

TARGET = BlockSchema(
    "target",
    "The frozen model to decompose; the label picks the family.",
    label=LabelKind.VARIANT,
    variants=(
        _family("tms", TmsKeys, _TOY, TmsKeys.__doc__ or ""),
        _family("resid_mlp", ResidMlpKeys, _TOY, ResidMlpKeys.__doc__ or ""),
        _family("llama", LlamaKeys, _LM, LlamaKeys.__doc__ or ""),
        _family("simple_mlp", SimpleMlpKeys, _LM, SimpleMlpKeys.__doc__ or ""),
        _family("gpt2", Gpt2Keys, _LM, Gpt2Keys.__doc__ or ""),
    ),
    required=True,
    layout=Layout.EXPANDED,
    noun="target family",
)
