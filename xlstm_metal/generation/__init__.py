"""Generation: sampling, streaming detokenization, and the generate_step → stream_generate → generate chain."""
from .generate import GenerationResponse, batch_generate, generate, generate_step, stream_generate
from .sampling import make_logits_processors, make_sampler
from .tokenizer import StreamingDetokenizer, TokenizerWrapper

__all__ = ["GenerationResponse", "StreamingDetokenizer", "TokenizerWrapper", "batch_generate", "generate",
           "generate_step", "make_logits_processors", "make_sampler", "stream_generate"]
