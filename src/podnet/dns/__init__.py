"""Cluster DNS: the Kubernetes DNS-Based Service Discovery specification
(schema 1.1.0), served by pods in kube-system behind the `kube-dns` Service.

* `records`: pure: Services, EndpointSlices, Pods and Namespaces in, a
  precomputed zone out, and the answer to any (name, type) from it.
* `server`: the serving loop (UDP and TCP, asyncio), forwarding of other
  names to an upstream resolver, readiness on HTTP.
* `informer`: list-then-watch over the REST API, relisting on 410 Gone.
* `upstream`: the lab's "internet" resolver, a tiny authoritative server.
* `podconf`: pure: the resolv.conf and hosts files the kubelet writes.
* `bootstrap`: the objects `podnet up` creates (Deployment, Services).
* `lookup`: a stub resolver with a search path, for `podnet probe`.
"""
