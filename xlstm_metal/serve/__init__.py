"""``xlstm-metal serve``: an OpenAI-compatible HTTP server whose conversations resume from cached recurrent state.

Requests share decode steps (continuous batching: ``scheduler.py`` over ``batch.py``)."""
