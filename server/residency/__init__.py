"""Which models are in memory: finding GGUF files, loading them, estimating memory, loading and unloading by keep_alive and budget."""
