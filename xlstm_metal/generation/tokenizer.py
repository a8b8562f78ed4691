"""Tokenizer of a checkpoint directory (Hugging Face ``tokenizer.json``) and streaming detokenization."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..files import read_json


class TokenizerError(InputError):
    """A tokenizer file is damaged or holds values of the wrong kind; the message names the file."""


def token_text(v):
    """A special token's text: tokenizer configs write it as a string or as an AddedToken object."""
    return v.get("content") if isinstance(v, dict) else v


def read_tokenizer(path: str | Path):
    """A ``tokenizers.Tokenizer`` from a tokenizer.json; a damaged file is a ``TokenizerError`` naming it."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer file at {path}")
    try:
        return Tokenizer.from_str(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TokenizerError(f"{path} is not UTF-8 text (byte {exc.start}); the file is damaged") from None
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises a bare Exception
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TokenizerError(f"{path} is not a valid tokenizer: {first}") from None


class TokenizerWrapper:
    """``encode``/``decode`` plus the special tokens from tokenizer_config.json / special_tokens_map.json."""

    def __init__(self, tokenizer, *, bos_token=None, eos_token=None, add_bos: bool = False, extra_eos_ids=(),
                 chat_template: str | None = None, chat_template_file: str = "tokenizer_config.json"):
        self.tokenizer = tokenizer
        self.chat_template, self.chat_template_file = chat_template, chat_template_file
        self.bos_token, self.eos_token = bos_token, eos_token
        tid = tokenizer.token_to_id
        self.bos_token_id = tid(bos_token) if bos_token else None
        eos = {tid(eos_token)} if eos_token and tid(eos_token) is not None else set()
        self.eos_token_ids = eos | {int(i) for i in extra_eos_ids}
        self.add_bos = add_bos and self.bos_token_id is not None

    @classmethod
    def from_dir(cls, directory: str | Path) -> "TokenizerWrapper":
        """The tokenizer of a checkpoint directory; a damaged file is a ``TokenizerError`` naming it."""
        d = Path(directory)
        tok = read_tokenizer(d / "tokenizer.json")
        special: dict = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the config wins
            if (d / name).exists():
                found = read_json(d / name, TokenizerError)
                if not isinstance(found, dict):
                    raise TokenizerError(f"{d / name} must hold a JSON object")
                for key in ("bos_token", "eos_token"):
                    if not isinstance(token_text(found.get(key)), (str, type(None))):
                        raise TokenizerError(f"{d / name} field '{key}' = {found[key]!r}: must be a token string")
                special.update({k: v for k, v in found.items() if v is not None})
        extra = []
        if (d / "config.json").exists():
            cfg = read_json(d / "config.json", TokenizerError)
            eos = cfg.get("eos_token_id") if isinstance(cfg, dict) else None
            extra = [] if eos is None else list(eos) if isinstance(eos, list) else [eos]
            if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in extra):
                raise TokenizerError(f"{d / 'config.json'} field 'eos_token_id' = {eos!r}: must be a token id or a "
                                     "list of token ids")
        template, where = _chat_template(d, special.get("chat_template"))
        return cls(tok, bos_token=token_text(special.get("bos_token")), eos_token=token_text(special.get("eos_token")),
                   add_bos=bool(special.get("add_bos_token", False)), extra_eos_ids=extra,
                   chat_template=template, chat_template_file=where)

    def special_tokens(self) -> dict[str, str]:
        """The special tokens a chat template may name (``bos_token``, ``eos_token``)."""
        return {k: v for k, v in (("bos_token", self.bos_token), ("eos_token", self.eos_token)) if v}

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_token_id is not None:
            ids = [self.bos_token_id] + ids
        return ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def detokenizer(self) -> "StreamingDetokenizer":
        return StreamingDetokenizer(self)


def _chat_template(directory: Path, configured) -> tuple[str | None, str]:
    """The chat template as transformers finds it: ``chat_template.jinja``, else tokenizer_config.json's
    ``chat_template`` (a string, or a list of named templates of which "default" is used)."""
    jinja = directory / "chat_template.jinja"
    if jinja.exists():
        try:
            return jinja.read_bytes().decode("utf-8"), str(jinja)
        except UnicodeDecodeError as exc:
            raise TokenizerError(f"{jinja} is not UTF-8 text (byte {exc.start}); the file is damaged") from None
    where = str(directory / "tokenizer_config.json")
    if isinstance(configured, list):
        named = {t.get("name"): t.get("template") for t in configured if isinstance(t, dict)}
        configured = named.get("default")
    return (configured if isinstance(configured, str) and configured.strip() else None), where


class StreamingDetokenizer:
    """Yields text as tokens arrive, never a broken multi-byte character: the whole token list is decoded
    each time and a trailing U+FFFD (an incomplete UTF-8 sequence) is held back until completed or flushed."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.emitted = 0  # characters of the decoded text already handed out
        self.text = ""

    def add_token(self, token: int) -> str:
        self.tokens.append(int(token))
        self.text = self.tokenizer.decode(self.tokens)
        stable = len(self.text)
        while stable > self.emitted and self.text[stable - 1] == "\ufffd":
            stable -= 1
        piece = self.text[self.emitted:stable]
        self.emitted = stable
        return piece

    def finalize(self) -> str:
        piece = self.text[self.emitted:]
        self.emitted = len(self.text)
        return piece
