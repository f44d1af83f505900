#!/bin/sh
# Rank 0 serves iperf3; every other rank measures TCP throughput to it once,
# prints iperf3's JSON summary, then idles so the group stays up to read it.
set -eu
if [ "$PETRI_RANK" = 0 ]; then
  exec iperf3 -s -p 5201
fi
server=$(head -n 1 "$PETRI_PEERS")
iperf3 -c "$server" -p 5201 -t "${SECONDS_TO_RUN:-5}" -J || true
exec sleep infinity
