"""The one place where checkpoint key names are mapped to our parameter paths.

Our node names already are the Hugging Face names (``backbone.embeddings``,
``backbone.blocks.N.mlstm_layer.q`` ...), so only the official ``xlstm`` package's own
``state_dict`` naming (``embedding.weight``) and tied embeddings need handling.
"""
from __future__ import annotations

_RENAMES = {"embedding.weight": "backbone.embeddings.weight"}


def sanitize(weights: dict, *, tie_word_embeddings: bool = False) -> dict:
    out = {}
    for key, value in weights.items():
        out[_RENAMES.get(key, key)] = value
    if tie_word_embeddings and "lm_head.weight" not in out and "backbone.embeddings.weight" in out:
        out["lm_head.weight"] = out["backbone.embeddings.weight"]
    return out
