"""Checkpoint to model: a hub id, a folder or a GGUF file, streamed tensor by tensor, with memory handed back."""
