"""The node agent as a Kubernetes client: the same service proxy and network
policy code as the lab's, fed by list-then-watch streams from any
Kubernetes API server (the lab's or a real cluster's)."""
