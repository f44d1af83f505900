#!/bin/bash
# Path-cost experiment (run by hand as root, under the bench lock): iperf3 between two
# throwaway namespaces over a plain veth pair, over Petri's path (isolated bridge ports,
# proxy_arp_pvlan, routed by a hub namespace) without and with the conntrack ACCEPT, and
# bridged at layer 2 (ports not isolated). Usage: tools/f2f-path-cost.sh [SECONDS]
set -u
T=${1:-3}
P=fx$$
cleanup() { for n in a b h c d; do ip netns del ${P}$n 2>/dev/null; done; }
trap cleanup EXIT
run() { # label ns_server ns_client addr
  ip netns exec $2 iperf3 -s -1 -p 5999 >/dev/null 2>&1 & sleep 0.3
  local fwd=$(ip netns exec $3 iperf3 -c $4 -p 5999 -t $T -O 1 -J | python3 -c 'import json,sys;print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))')
  echo "$1 fwd_mbit=$fwd"
}
# A: native veth
ip netns add ${P}a; ip netns add ${P}b
ip link add ${P}va netns ${P}a type veth peer name ${P}vb netns ${P}b
ip -n ${P}a addr add 10.252.9.1/30 dev ${P}va; ip -n ${P}a link set ${P}va up; ip -n ${P}a link set lo up
ip -n ${P}b addr add 10.252.9.2/30 dev ${P}vb; ip -n ${P}b link set ${P}vb up; ip -n ${P}b link set lo up
# B: hub with an isolated-port bridge, proxy_arp_pvlan, routing (Petri's path)
ip netns add ${P}h; ip netns add ${P}c; ip netns add ${P}d
ip -n ${P}h link add br0 type bridge; ip -n ${P}h addr add 10.252.0.1/24 dev br0; ip -n ${P}h link set br0 up
ip netns exec ${P}h sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.br0.proxy_arp_pvlan=1 net.ipv4.conf.br0.send_redirects=0 net.ipv4.conf.all.send_redirects=0
for x in c:2 d:3; do n=${x%%:*}; i=${x##*:}
  ip link add ${P}h$n netns ${P}h type veth peer name eth0 netns ${P}$n
  ip -n ${P}h link set ${P}h$n master br0 up; ip -n ${P}h link set ${P}h$n type bridge_slave isolated on
  ip -n ${P}$n addr add 10.252.0.$i/24 dev eth0; ip -n ${P}$n link set eth0 up; ip -n ${P}$n link set lo up
done
echo "hub br-nf-call-iptables: $(ip netns exec ${P}h sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null)"
for round in 1 2; do
  run "native-veth" ${P}b ${P}a 10.252.9.2
  ip netns exec ${P}h iptables -F FORWARD
  run "routed-bridge-no-rules" ${P}d ${P}c 10.252.0.3
  ip netns exec ${P}h iptables -A FORWARD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
  ip netns exec ${P}h iptables -A FORWARD -i br0 -o br0 -s 10.252.0.2 -j ACCEPT
  run "routed-bridge-conntrack" ${P}d ${P}c 10.252.0.3
  ip netns exec ${P}h iptables -F FORWARD
  ip -n ${P}h link set ${P}hc type bridge_slave isolated off; ip -n ${P}h link set ${P}hd type bridge_slave isolated off
  ip -n ${P}c neigh flush all; ip -n ${P}d neigh flush all
  run "bridged-L2-not-isolated" ${P}d ${P}c 10.252.0.3
  ip -n ${P}h link set ${P}hc type bridge_slave isolated on; ip -n ${P}h link set ${P}hd type bridge_slave isolated on
  ip -n ${P}c neigh flush all; ip -n ${P}d neigh flush all
done
