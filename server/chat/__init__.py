"""Chat rendering: the model's template or its family's format."""
