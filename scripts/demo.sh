#!/usr/bin/env bash
# The demo: a 2-node lab cluster, the example app, and real traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
export PODNET_CLUSTER=${PODNET_CLUSTER:-demo}
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

podnet down >/dev/null 2>&1 || true
step podnet up
step podnet apply -f examples/web.yaml
printf '\nwaiting for the pods to be Ready'
for _ in $(seq 100); do
  ready=$(podnet get pods -o json | python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin)["items"] for c in p["status"].get("conditions",[]) if c["type"]=="Ready" and c["status"]=="True"))')
  [ "$ready" -ge 4 ] && break
  printf .; sleep 0.2
done
echo
step podnet get nodes -o wide
step podnet get deploy,svc
step podnet get pods -o wide
first=$(podnet get pods -l app=web -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["metadata"]["name"])')
echo; echo "# pod to pod, across nodes, over TCP and UDP: the responder names itself and the caller it saw"
step podnet probe client "$first" --port 8080
step podnet probe client "$first" --port 8081 --protocol udp
echo; echo "# a pod's readiness probe: make $first fail it, then recover"
step podnet exec client -- curl -s -X POST "http://$(podnet get pod "$first" -o json | python3 -c 'import json,sys;print(json.load(sys.stdin)["status"]["podIP"])'):8080/healthz/fail"
sleep 2.5
step podnet get pods -l app=web
step podnet exec client -- curl -s -X POST "http://$(podnet get pod "$first" -o json | python3 -c 'import json,sys;print(json.load(sys.stdin)["status"]["podIP"])'):8080/healthz/pass"
echo; echo "# the outside world: a node reaches the internet server through the cloud NAT, seen from its public address"
step podnet probe node/node-1 internet --port 80
echo; echo "# a Service: a stable virtual IP over the pods, found by name through the cluster DNS"
step podnet exec client -- getent hosts web
step podnet probe client web --port 80 --count 30
echo; echo "# from outside: a LoadBalancer from the lab's cloud, in front of every node's nodePort"
podnet apply -f - <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web-public}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
YAML
for _ in $(seq 50); do
  lb=$(podnet get svc web-public -o json | python3 -c 'import json,sys; print((json.load(sys.stdin).get("status",{}).get("loadBalancer",{}).get("ingress") or [{}])[0].get("ip",""))')
  [ -n "$lb" ] && break; sleep 0.2
done
step podnet get svc web-public
sleep 1.5  # the cloud's first health checks
step podnet probe internet "$lb" --port 80 --count 10
step podnet scale deployment/web --replicas 5
sleep 1
step podnet get pods -o wide
printf '\nThe cluster "%s" is still running: explore it (podnet --help), then remove it with: PODNET_CLUSTER=%s podnet down\n' "$PODNET_CLUSTER" "$PODNET_CLUSTER"
