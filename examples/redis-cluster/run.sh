#!/bin/sh
# Starts an unmodified redis-server in cluster mode on the member's own
# address. Rank 0 also creates the cluster, once, in the background (create.sh).
set -eu
mkdir -p /tmp/redis
if [ "$PETRI_RANK" = 0 ]; then
  sh create.sh &
fi
exec redis-server \
  --bind "$PETRI_ADDRESS" \
  --port 6379 \
  --cluster-enabled yes \
  --cluster-config-file /tmp/redis/nodes.conf \
  --cluster-node-timeout 5000 \
  --dir /tmp/redis \
  --save '' \
  --appendonly no \
  --protected-mode no \
  --loglevel warning
