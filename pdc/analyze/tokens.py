"""Token ids ↔ text for the analysis half: what a harvest's windows and the viewer's strips
show, and how the viewer's probe turns typed text into ids.

Two kinds, as the store manifest's `tokenizer` names them: `{"kind": "bytes"}` (byte-level
targets: vocab 256, one id per UTF-8 byte) and `{"kind": "tokenizer.json", "path": DIR}`
(HF targets: the `tokenizers` library reads DIR/tokenizer.json, as `pdc tokens` did when it
made the token file). Anything else shows ids as `#id` and cannot encode text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pdc.ir.graph import IR

BYTES = {"kind": "bytes"}


class TokenizerError(Exception):
    """Text that this run's tokenizer cannot encode (no tokenizer, or one that fails to load)."""


@dataclass
class Decoder:
    """One tokenizer, as the manifest describes it (`spec`); the HF one is loaded lazily."""

    spec: dict[str, Any]
    _hf: Any = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return str(self.spec.get("kind", "ids"))

    def _tokenizer(self) -> Any:
        if self._hf is None:
            from tokenizers import Tokenizer

            path = Path(str(self.spec.get("path", "")))
            file = path if path.name == "tokenizer.json" else path / "tokenizer.json"
            try:
                self._hf = Tokenizer.from_file(str(file))
            except Exception as error:  # noqa: BLE001 — a missing or unreadable file is the user's to fix
                raise TokenizerError(f"{file}: cannot load the tokenizer ({error})") from None
        return self._hf

    def encode(self, text: str) -> list[int]:
        """The ids of `text` as the token file holds them (no special tokens added)."""
        if self.kind == "bytes":
            return list(text.encode("utf-8"))
        if self.kind == "tokenizer.json":
            return list(self._tokenizer().encode(text, add_special_tokens=False).ids)
        raise TokenizerError("this run has no tokenizer the viewer can use (neither byte-level nor a "
                             "tokenizer.json beside its weights): text cannot be turned into token ids")

    def text(self, ids: Sequence[int]) -> str:
        """The text of a run of ids (invalid UTF-8 bytes shown as U+FFFD)."""
        if self.kind == "bytes":
            return bytes(int(i) & 0xFF for i in ids).decode("utf-8", errors="replace")
        if self.kind == "tokenizer.json":
            return str(self._tokenizer().decode([int(i) for i in ids], skip_special_tokens=False))
        return " ".join(f"#{int(i)}" for i in ids)

    def piece(self, token: int) -> str:
        """One token as a short readable string (a strip cell, a PMI row): printable bytes as
        themselves, other bytes as `\\xNN`; HF tokens decoded alone."""
        token = int(token)
        if self.kind == "bytes":
            if 32 <= token < 127:
                return chr(token)
            return {9: "\\t", 10: "\\n", 13: "\\r"}.get(token, f"\\x{token & 0xFF:02x}")
        if self.kind == "tokenizer.json":
            return str(self._tokenizer().decode([token], skip_special_tokens=False))
        return f"#{token}"

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.piece(i) for i in ids]


def tokenizer_of_ir(ir: IR) -> dict[str, Any]:
    """The manifest form of a run's tokenizer, from its IR: a `tokenizer.json` in the target's
    weights (else config) directory, else bytes for a 256-token vocabulary, else `ids`."""
    try:
        target = ir.options("target")
    except Exception:  # noqa: BLE001 — a toy target has no such options; it has no tokens either
        target = None
    for key in ("weights", "config"):
        value = getattr(target, key, None) if target is not None else None
        if value:
            path = Path(ir.spec_dir) / str(value)
            directory = path if path.is_dir() else path.parent
            if (directory / "tokenizer.json").is_file():
                return {"kind": "tokenizer.json", "path": str(directory.resolve())}
    vocab = ir.facts["target"].dims.get("vocab") if hasattr(ir.facts.get("target"), "dims") else None
    return dict(BYTES) if vocab == 256 else {"kind": "ids"}


__all__ = ["Decoder", "TokenizerError", "tokenizer_of_ir", "BYTES"]
