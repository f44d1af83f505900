#!/bin/sh
# Turns the group's peers file into etcd's --initial-cluster and starts an
# unmodified etcd. Member names follow rank order: m0, m1, …
set -eu
cluster=""
i=0
while read -r address; do
  cluster="${cluster:+$cluster,}m$i=http://$address:2380"
  i=$((i + 1))
done < "$PETRI_PEERS"
exec etcd \
  --name "m$PETRI_RANK" \
  --data-dir /tmp/etcd \
  --listen-peer-urls "http://$PETRI_ADDRESS:2380" \
  --initial-advertise-peer-urls "http://$PETRI_ADDRESS:2380" \
  --listen-client-urls "http://$PETRI_ADDRESS:2379" \
  --advertise-client-urls "http://$PETRI_ADDRESS:2379" \
  --initial-cluster "$cluster" \
  --initial-cluster-state new \
  --initial-cluster-token "$PETRI_GROUP" \
  --log-level warn
