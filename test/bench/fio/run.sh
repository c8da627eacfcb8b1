#!/usr/bin/env bash
# Runs the fio jobs of this directory on a real cluster against one StorageClass and
# saves fio's JSON as fio-<storage-class>.json (docs/benchmarks.md, "Data path").
# It creates a PVC of the class and a Job that mounts it and runs small-files.fio,
# then streaming.fio, preferably on another node than any pvnfs NFS server pod; both
# are deleted afterwards.
#
# Usage: test/bench/fio/run.sh <storage-class> [ReadWriteMany|ReadWriteOnce]
#   ReadWriteMany (default) for pvnfs classes, ReadWriteOnce for the plain RWO class.
# Environment: NAMESPACE (pvnfs-bench), SIZE of the PVC (20Gi), FIO_IMAGE (an image
# with fio >= 3.30, or a Debian image: fio is installed with apt-get;
# debian:bookworm-slim), PVNFS_NAMESPACE of the NFS server pods (pvnfs-system),
# TIMEOUT for the Job in seconds (3600).
set -euo pipefail

class=${1:?usage: $0 <storage-class> [ReadWriteMany|ReadWriteOnce]}
mode=${2:-ReadWriteMany}
ns=${NAMESPACE:-pvnfs-bench}
size=${SIZE:-20Gi}
image=${FIO_IMAGE:-debian:bookworm-slim}
servers=${PVNFS_NAMESPACE:-pvnfs-system}
timeout=${TIMEOUT:-3600}
here=$(cd "$(dirname "$0")" && pwd)
name=fio-$class

kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$ns" create configmap fio-jobs --from-file="$here/small-files.fio" --from-file="$here/streaming.fio" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null

cleanup() {
  kubectl -n "$ns" delete job "$name" --ignore-not-found --wait=true >/dev/null || true
  kubectl -n "$ns" delete pvc "$name" --ignore-not-found --wait=true >/dev/null || true
}
trap cleanup EXIT

kubectl apply -f - <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $name, namespace: $ns}
spec:
  storageClassName: $class
  accessModes: [$mode]
  resources: {requests: {storage: $size}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: $name, namespace: $ns}
spec:
  backoffLimit: 0
  activeDeadlineSeconds: $timeout
  template:
    metadata: {labels: {app: pvnfs-fio}}
    spec:
      restartPolicy: Never
      affinity:
        podAntiAffinity:
          # Measure over the network, as most clients of a volume are.
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                namespaces: [$servers]
                labelSelector:
                  matchLabels: {app.kubernetes.io/component: nfs-server}
      containers:
        - name: fio
          image: $image
          command: [sh, -ec]
          args:
            - |
              command -v fio >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends fio; } >/dev/null 2>&1
              fio --version >&2
              cd /data
              fio --output-format=json /jobs/small-files.fio >/tmp/small-files.json
              fio --output-format=json /jobs/streaming.fio >/tmp/streaming.json
              echo "=== fio JSON ==="
              printf '{"small-files": %s, "streaming": %s}\n' "\$(cat /tmp/small-files.json)" "\$(cat /tmp/streaming.json)"
          volumeMounts:
            - {name: data, mountPath: /data}
            - {name: jobs, mountPath: /jobs}
          resources:
            requests: {cpu: "2", memory: 1Gi}
      volumes:
        - name: data
          persistentVolumeClaim: {claimName: $name}
        - name: jobs
          configMap: {name: fio-jobs}
YAML

echo "waiting up to ${timeout}s for job $ns/$name (fio on StorageClass $class)..." >&2
deadline=$((SECONDS + timeout + 60))
while :; do
  state=$(kubectl -n "$ns" get job "$name" -o jsonpath='{.status.succeeded}/{.status.failed}')
  case $state in
    1/*) break ;;
    */1)
      kubectl -n "$ns" logs "job/$name" --tail=50 >&2 || true
      echo "job $ns/$name failed" >&2
      exit 1
      ;;
  esac
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "job $ns/$name did not finish in ${timeout}s" >&2
    exit 1
  fi
  sleep 10
done
node=$(kubectl -n "$ns" get pod -l job-name="$name" -o jsonpath='{.items[0].spec.nodeName}')
kubectl -n "$ns" logs "job/$name" | sed -n '/^=== fio JSON ===$/,$p' | tail -n +2 >"fio-$class.json"
echo "fio ran on node $node; results in fio-$class.json" >&2
