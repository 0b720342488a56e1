"""The model server: Open Inference Protocol v2 (REST) and v1 JSON for registered models."""
