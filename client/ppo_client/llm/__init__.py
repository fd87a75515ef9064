"""OpenAI-compatible chat: the client the optimizer talks through, and the local server it starts."""
