"""Kubernetes objects as the lab understands them: plain JSON-shaped dicts,
with the kinds registry, defaulting, validation and manifest parsing."""
