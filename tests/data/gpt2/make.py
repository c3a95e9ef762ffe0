"""Write the tiny GPT-2 checkpoint tests/test_gpt2.py compares pdc's forward against, with
transformers' own logits: run where torch and transformers are installed (not pdc's
dependencies), from the repository root:

    python tests/data/gpt2/make.py

It writes, next to this file, `hf/` (config.json and model.safetensors exactly as
`GPT2LMHeadModel.save_pretrained` writes them: `transformer.`-prefixed names, tied head
omitted) and `logits.safetensors` (`tokens` [2, 12] int64, `logits` [2, 12, vocab] f32,
`versions` as metadata). Every parameter is random — LayerNorm weights and all biases too, so
a dropped bias or a mis-split c_attn shows — and the model is small (a few tens of KB).
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

HERE = Path(__file__).parent


def main() -> None:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=61, n_embd=24, n_layer=2, n_head=3, n_positions=16, n_inner=40,
                        layer_norm_epsilon=1e-5, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            norm = ".ln_" in name and name.endswith(".weight")  # LayerNorm gains about 1, all else about 0
            param.copy_(torch.randn_like(param) * 0.2 + (1.0 if norm else 0.0))
    model.save_pretrained(HERE / "hf", safe_serialization=True)
    (HERE / "hf" / "generation_config.json").unlink(missing_ok=True)  # not pdc's business
    tokens = torch.randint(0, config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(tokens).logits.float()
    save_file({"tokens": tokens.to(torch.int64).contiguous(), "logits": logits.contiguous()},
              str(HERE / "logits.safetensors"),
              metadata={"torch": torch.__version__, "transformers": transformers.__version__})
    print(f"wrote {HERE / 'hf'} and {HERE / 'logits.safetensors'} (torch {torch.__version__}, "
          f"transformers {transformers.__version__})")


if __name__ == "__main__":
    main()
