"""Where models come from: the Hub and its mirrors, Ollama and OCI registries, each a Source chosen by scheme (router)."""
