"""The models folder (MODELS_DIR): installed files and their records (store, provenance), what their GGUF headers
say (details), when each was last used (usage), the staging of pulls under way (staging), what is evicted to
make room (retention), and the file-system steps they share (fsutil)."""
