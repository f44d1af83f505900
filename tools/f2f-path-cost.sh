#!/bin/bash
# Path-cost experiment for `bench net --f2f` (run by hand as root, under the bench lock):
# the same probes (iperf3 throughput; 1 KB TCP round trips, Nagle off; connect to first
# byte) between throwaway namespaces over each piece of Petri's member-to-member path,
# alternating the variants every round so each ratio is against a baseline of the same run.
#   veth            a plain veth pair (the native baseline)
#   routed          Petri's path: isolated bridge ports, proxy_arp_pvlan, routed by a hub
#   routed+fw       the same plus Petri-shaped rules (jump into a chain whose first rule
#                   accepts ESTABLISHED, a per-member group jump, a NAT rule for egress)
#   ...-nobrnf      the hub's net.bridge.bridge-nf-call-iptables=0 (no br_netfilter hook)
#   ...+notrack     raw-table NOTRACK for member-to-member traffic, stateless accepts
#   ...-redir       net.ipv4.conf.all.send_redirects=1 (its default): the kernel then sends
#                   a redirect per routed packet back out the port (and caches no route)
#   l2              one bridge, ports not isolated (layer 2, no route)
#   direct          routed+fw plus Petri's direct path (src/net/group-path.ts): a u32 filter
#                   on each member's host veth redirects exactly src→dst to the peer's host
#                   veth, the peer's MAC permanent in each member's namespace
# Usage: [PIN=CPU] tools/f2f-path-cost.sh [SECONDS] [ROUNDS] [VARIANTS...]
# PIN=1 runs both ends on CPU 1, so each figure is the path's CPU cost, not where the
# scheduler happened to place the two ends (which moves round trips by 3x on 2 cores).
# Besides wall-clock figures it prints CPU ones, which hold up on a loaded machine:
# mbit_per_cpu_s (iperf3's getrusage of both ends), rtt_cpu_us and ttfb_cpu_us (time on
# CPU of both ends per round trip / per connect, from /proc/<pid>/task/*/schedstat). With
# IRQ time accounting off (this kernel) softirq work done in a task's context is its time.
set -u
T=${1:-3}
R=${2:-2}
shift 2 2>/dev/null
VARIANTS=${*:-veth routed routed-nobrnf routed+fw routed+fw-nobrnf routed+notrack-nobrnf l2 l2-nobrnf}
P=fx$$
TS=${PIN:+taskset -c $PIN}
H=${P}h
cleanup() { for n in a b h c d; do ip netns del ${P}$n 2>/dev/null; done; }
trap cleanup EXIT
PY=$(mktemp /tmp/f2f-probe-XXXX.py)
trap 'cleanup; rm -f $PY' EXIT
cat >"$PY" <<'EOF'
import socket, sys, time
mode, host = sys.argv[1], sys.argv[2]
if mode == 'serve':
    import os, threading
    def echo():
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 7002)); s.listen(8)
        while True:
            c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                d = c.recv(65536)
                if not d: break
                c.sendall(d)
            c.close()
    def first():
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 7003)); s.listen(128)
        while True:
            c, _ = s.accept(); c.send(b'x'); c.close()
    threading.Thread(target=echo, daemon=True).start(); first()
def cpu_ns(pid):  # time on CPU of every thread of pid (softirq work done in its context included)
    import os
    return sum(int(open(f'/proc/{pid}/task/{t}/schedstat').read().split()[0]) for t in os.listdir(f'/proc/{pid}/task'))
server = int(sys.argv[3])
both = lambda: cpu_ns('self') + cpu_ns(server)
msg = b'x' * 1024
c = socket.create_connection((host, 7002)); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def rt():
    c.sendall(msg); n = 0
    while n < 1024: n += len(c.recv(65536))
for _ in range(200): rt()
t = time.perf_counter(); c0 = both()
for _ in range(3000): rt()
rtt = (time.perf_counter() - t) / 3000 * 1e6; rtt_cpu = (both() - c0) / 3000 / 1e3
c.close(); ttfb = []; c0 = both()
for _ in range(300):
    t = time.perf_counter(); s = socket.create_connection((host, 7003)); s.recv(1)
    ttfb.append((time.perf_counter() - t) * 1e3); s.close()
ttfb_cpu = (both() - c0) / 300 / 1e3; ttfb.sort()
print(f"rtt_us={rtt:.1f} rtt_cpu_us={rtt_cpu:.1f} ttfb_ms_mean={sum(ttfb)/len(ttfb):.3f} ttfb_cpu_us={ttfb_cpu:.1f}")
EOF
# probe server client addr label
probe() {
  ip netns exec $1 $TS iperf3 -s -1 -p 5999 >/dev/null 2>&1 &
  sleep 0.3
  # Mbit/s, and Mbit per CPU-second of both iperf3 ends (getrusage: softirq work in their context counts)
  local fwd=$(ip netns exec $2 $TS iperf3 -c $3 -p 5999 -t $T -O 1 -J | python3 -c 'import json,sys
e=json.load(sys.stdin)["end"]; b=e["sum_received"]["bits_per_second"]/1e6; c=e["cpu_utilization_percent"]
print("%.0f mbit_per_cpu_s=%.0f" % (b, b/((c["host_total"]+c["remote_total"])/100)))')
  ip netns exec $1 $TS python3 $PY serve $3 & local srv=$!
  sleep 0.3
  echo "$4 fwd_mbit=$fwd $(ip netns exec $2 $TS python3 $PY run $3 $srv)"
  kill $srv; wait $srv 2>/dev/null
}
# A: native veth
ip netns add ${P}a; ip netns add ${P}b
ip link add ${P}va netns ${P}a type veth peer name ${P}vb netns ${P}b
ip -n ${P}a addr add 10.252.9.1/30 dev ${P}va; ip -n ${P}a link set ${P}va up; ip -n ${P}a link set lo up
ip -n ${P}b addr add 10.252.9.2/30 dev ${P}vb; ip -n ${P}b link set ${P}vb up; ip -n ${P}b link set lo up
# B: hub with an isolated-port bridge, proxy_arp_pvlan, routing (Petri's path)
ip netns add $H; ip netns add ${P}c; ip netns add ${P}d
ip -n $H link add br0 type bridge; ip -n $H addr add 10.252.0.1/24 dev br0; ip -n $H link set br0 up
ip netns exec $H sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.br0.proxy_arp=1 net.ipv4.conf.br0.proxy_arp_pvlan=1 net.ipv4.conf.br0.send_redirects=0 net.ipv4.conf.all.send_redirects=0
for x in c:2 d:3; do n=${x%%:*}; i=${x##*:}
  ip link add ${P}h$n netns $H type veth peer name eth0 netns ${P}$n
  ip -n $H link set ${P}h$n master br0 up
  ip -n ${P}$n addr add 10.252.0.$i/24 dev eth0; ip -n ${P}$n link set eth0 up; ip -n ${P}$n link set lo up
done
ipt() { ip netns exec $H iptables -w "$@"; }
isolate() { ip -n $H link set ${P}hc type bridge_slave isolated $1; ip -n $H link set ${P}hd type bridge_slave isolated $1
  ip -n ${P}c neigh flush all; ip -n ${P}d neigh flush all; }
reset() { undirect; ipt -F; ipt -X; ipt -t raw -F; ipt -t nat -F; ipt -t nat -X; isolate on
  ip netns exec $H sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.conf.all.send_redirects=0 2>/dev/null; }
fw() { # Petri's shape: FWD chain (replies first), group chain, NAT for egress
  ipt -N FWD; ipt -N G1; ipt -I FORWARD 1 -j FWD
  ipt -A FWD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
  ipt -A FWD -i br0 -o br0 -s 10.252.0.2/32 -j G1; ipt -A FWD -i br0 -o br0 -s 10.252.0.3/32 -j G1
  ipt -A FWD -i br0 -o br0 -p tcp -j REJECT --reject-with tcp-reset; ipt -A FWD -i br0 -o br0 -j DROP
  ipt -A G1 -d 10.252.0.3/32 -j ACCEPT; ipt -A G1 -d 10.252.0.2/32 -j ACCEPT
  ipt -t nat -N NAT; ipt -t nat -I POSTROUTING 1 -j NAT; ipt -t nat -A NAT -s 10.252.0.0/24 ! -d 10.252.0.0/24 -j MASQUERADE; }
notrack() {
  ipt -t raw -A PREROUTING -i br0 -s 10.252.0.0/24 -d 10.252.0.0/24 -j NOTRACK
  ipt -A FORWARD -i br0 -o br0 -s 10.252.0.2/32 -d 10.252.0.3/32 -j ACCEPT
  ipt -A FORWARD -i br0 -o br0 -s 10.252.0.3/32 -d 10.252.0.2/32 -j ACCEPT
  ipt -A FORWARD -i br0 -o br0 -j DROP; }
mac() { ip -n ${P}$1 -j link show eth0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])'; }
direct() { fw
  for x in c:2:d:3 d:3:c:2; do IFS=: read n i m j <<<"$x"
    ip netns exec $H tc qdisc add dev ${P}h$n handle ffff: ingress
    ip netns exec $H tc filter add dev ${P}h$n parent ffff: prio 10 protocol ip u32 match ip src 10.252.0.$i/32 \
      match ip dst 10.252.0.$j/32 action mirred egress redirect dev ${P}h$m
    ip -n ${P}$n neigh replace 10.252.0.$j lladdr $(mac $m) dev eth0 nud permanent
  done; }
undirect() { for n in c d; do ip netns exec $H tc qdisc del dev ${P}h$n ingress 2>/dev/null
  ip -n ${P}$n neigh del 10.252.0.$([ $n = c ] && echo 3 || echo 2) dev eth0 2>/dev/null; done; true; }
echo "hub default bridge-nf-call-iptables: $(ip netns exec $H sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null)"
for round in $(seq 1 $R); do
  for v in $VARIANTS; do
    reset
    case $v in *redir*) ip netns exec $H sysctl -qw net.ipv4.conf.all.send_redirects=1;; esac
    case $v in *nobrnf*) ip netns exec $H sysctl -qw net.bridge.bridge-nf-call-iptables=0;; esac
    case $v in *+fw*) fw;; *+notrack*) notrack;; l2*) isolate off;; direct) direct;; esac
    if [ $v = veth ]; then probe ${P}b ${P}a 10.252.9.2 "r$round $v"
    else probe ${P}d ${P}c 10.252.0.3 "r$round $v"; fi
  done
done
