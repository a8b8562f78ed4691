"""``xlstm-metal serve``: an OpenAI-compatible HTTP server whose conversations resume from cached recurrent state.

Requests are served one at a time behind a lock (continuous batching across requests is a later step)."""
