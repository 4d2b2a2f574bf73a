"""GGUF proxy sidecar: pulls verified models into MODELS_DIR and fronts the inference backend."""
VERSION = "0.1.0"
