"""The wiring-spec file format as pydantic models: the keys common to every node (a block's own parameters
are validated later by its ``Params`` model)."""
from __future__ import annotations

from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field

KERNEL_CHOICES = ("auto", "chunkwise", "sequence", "step")

Scalar = Union[int, float, bool, str]


class NodeEntry(BaseModel):
    """One block instance. Keys other than these are the block's own parameters."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="Unique node name; also the parameter key prefix "
                                  "(e.g. backbone.blocks.0.mlstm_layer).")
    type: str = Field(description="Registered block type, e.g. mlstm, rms_norm, swiglu; inside a repeat also a vary "
                                  "key, so that copies differ in type.")
    inputs: list[str] = Field(default_factory=list,
                              description="Names of the nodes (or graph inputs) this node reads.")
    kernel: str = Field("auto", description="Kernel override for kernel-using blocks: auto, chunkwise, sequence, "
                                            "step, or a registered kernel name.")
    chunk_size: Union[int, str, None] = Field(None, description="Chunk size override for chunkwise kernels "
                                                                "(int or dim name).")
    when: dict[str, Union[Scalar, list[Scalar]]] = Field(default_factory=dict, description="Keep the node only in "
                                                         "the copies where each named per-copy value (or dim) is "
                                                         "the given value or one of a list; where it is left out, "
                                                         "its name stands for its first input.")
    by_type: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Parameters for the copies of "
                                               "one type only: block type -> {parameter: value}; they override "
                                               "the node's shared parameters.")


class RepeatEntry(BaseModel):
    """Stamps ``repeat`` copies of ``nodes``; copy i is named ``name.format(i=i)``."""

    model_config = ConfigDict(extra="forbid")

    repeat: Union[int, str] = Field(description="Number of copies (int or dim name).")
    name: str = Field(description="Name pattern of a copy, containing {i}, e.g. backbone.blocks.{i}.")
    inputs: dict[str, str] = Field(default_factory=dict, description="Loop-carried inputs: local name -> outer node "
                                   "for copy 0; copy i>0 gets copy i-1's output.")
    output: Union[str, None] = Field(None, description="Inner node that is a copy's output "
                                                       "(default: the last inner node).")
    vary: dict[str, Union[list[Scalar], dict[str, Union[list[Union[int, str]], Scalar]]]] = Field(
        default_factory=dict, description="Per-copy values usable like dims (and as a node's type) inside the "
        "copies: name -> list of length repeat, or a placement {value: [positions], default: value}.")
    nodes: list[dict[str, Any]] = Field(description="The nodes of one copy (may include nested repeats).")


class WiringSpecFile(BaseModel):
    """Top level of a wiring-spec YAML file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Architecture name.")
    description: str = Field("", description="Free text.")
    dims: dict[str, Scalar] = Field(default_factory=dict, description="Named dimensions and hyper-parameters, "
                                    "referenced by name (or simple arithmetic) in node parameters.")
    inputs: list[str] = Field(default_factory=lambda: ["tokens"], description="Graph inputs (token ids [B, S]).")
    nodes: list[dict[str, Any]] = Field(description="Nodes and repeat groups, in any order.")
    outputs: list[str] = Field(description="Nodes whose values the graph returns; the first one is the logits.")
