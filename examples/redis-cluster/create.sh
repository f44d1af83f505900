#!/bin/sh
# Rank 0 only, after the start barrier: waits until every member in the peers
# file answers PING, then runs `redis-cli --cluster create` over all of them
# (one replica per master with six or more members, none below).
set -eu
nodes=""
count=0
while read -r address; do
  nodes="$nodes $address:6379"
  count=$((count + 1))
done < "$PETRI_PEERS"
for node in $nodes; do
  tries=0
  until [ "$(redis-cli -h "${node%:*}" -p 6379 ping 2>/dev/null)" = PONG ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ]; then
      echo "create.sh: $node never answered PING" >&2
      exit 1
    fi
    sleep 0.2
  done
done
replicas=0
if [ "$count" -ge 6 ]; then replicas=1; fi
# shellcheck disable=SC2086 -- one argument per node
redis-cli --cluster create $nodes --cluster-replicas "$replicas" --cluster-yes
