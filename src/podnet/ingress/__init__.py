"""Ingress (networking.k8s.io/v1): HTTP routing by host and path through an
in-cluster nginx. `model` holds the semantics (pure), `nginx` renders the
configuration (pure), `controller` is the thin I/O around them."""
