"""Declared models: the manifest (MODELS_MANIFEST) and its lock file, the reconciler that keeps what it declares
installed (and loaded, for keep_loaded), and the pulls started with the proxy (preload)."""
