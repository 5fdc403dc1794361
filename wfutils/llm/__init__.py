"""The prompted arm: the OpenAI-compatible client, the local server, prompting strategies and retrieval."""
