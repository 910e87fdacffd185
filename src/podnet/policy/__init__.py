"""NetworkPolicy (networking.k8s.io/v1): the pure semantics (model), the
nftables layout (render), and the node agent that applies it (agent)."""
