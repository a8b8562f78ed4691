"""JSON Schema of the wiring-spec format, generated from the registered blocks' parameter models; editors use it
to complete and check spec files (``# yaml-language-server: $schema=xlstm-spec.schema.json``)."""
from __future__ import annotations

import json
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from .model import NodeEntry, RepeatEntry, WiringSpecFile


def _described(model: type[BaseModel], name: str, **kw) -> Any:
    return Field(description=model.model_fields[name].description, **kw)


def node_models() -> list[type[BaseModel]]:
    from xlstm_metal.blocks import block_types

    models = []
    for type_name, cls in block_types().items():
        fields: dict[str, Any] = {
            "name": (str, _described(NodeEntry, "name")),
            "type": (Literal[type_name], Field(description=cls.summary or (cls.__doc__ or "").strip().split("\n")[0])),
            "inputs": (list[str], _described(NodeEntry, "inputs", default_factory=list)),
            "by_type": (dict[str, dict[str, Any]], _described(NodeEntry, "by_type", default_factory=dict)),
            "when": (NodeEntry.model_fields["when"].annotation, _described(NodeEntry, "when", default_factory=dict)),
        }
        if cls.kernel_family:
            fields["kernel"] = (str, _described(NodeEntry, "kernel", default="auto"))
            fields["chunk_size"] = (Optional[Union[int, str]], _described(NodeEntry, "chunk_size", default=None))
        for fname, info in cls.Params.model_fields.items():
            default = info.default if not info.is_required() else ...
            # numeric parameters may also be written as a dim name or arithmetic over dims
            fields[fname] = (Union[info.annotation, str], Field(default, description=info.description))
        models.append(create_model(f"Node_{type_name}", __config__=ConfigDict(extra="forbid"), **fields))
    return models


def spec_json_schema() -> dict[str, Any]:
    nodes = node_models()
    node_union = Union[tuple(nodes)] if nodes else dict  # type: ignore[valid-type]
    repeat = create_model("Repeat", __config__=ConfigDict(extra="forbid"),
                          **{k: (v.annotation, v) for k, v in RepeatEntry.model_fields.items() if k != "nodes"},
                          nodes=(list[Union[node_union, dict]], _described(RepeatEntry, "nodes")))
    top = create_model("WiringSpec", __config__=ConfigDict(extra="forbid", title="xlstm_metal wiring spec"),
                       **{k: (v.annotation, v) for k, v in WiringSpecFile.model_fields.items() if k != "nodes"},
                       nodes=(list[Union[repeat, node_union]], _described(WiringSpecFile, "nodes")))
    schema = top.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def write_schema(path=None) -> str:
    text = json.dumps(spec_json_schema(), indent=2)
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return text
