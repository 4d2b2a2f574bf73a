"""The command line (`python -m proxy`, `gguf-proxy`): pull, ls, rm, push and their progress display."""
