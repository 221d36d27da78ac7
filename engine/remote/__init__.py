"""The OpenAI-compatible backend: a server (vLLM, the llama.cpp server, Ollama) runs the model. Importing it never
imports torch."""
