#!/usr/bin/env bash
# The main job, end to end on this machine:
#   plan every chain → build three devices' networks → start a controller (temp data dir) →
#   enrol the devices and start their galette-agents →
#     demo-1: two ports between host A and host B (a bump in the wire: forwards),
#     demo-2: one port facing a traffic generator (sends frames back),
#     demo-3: two ports, reached by the controller only across its own data port →
#   publish the security chain's NFs → release them (rebuilt here, signed with a release
#   key the devices pin; the controller never holds it) → push chains/security.toml signed
#   and assign it to demo-1 and demo-2 → traffic (the allow-list drops it) → open the
#   allow-list with a signed `galette map set` → traffic A ⇄ B through demo-1 and back from
#   demo-2, clean and signature-carrying flows through the userland DPI → counters → a
#   version using an unreleased build is refused while traffic keeps flowing → demo-3
#   gets a version that cuts its control path: the dead-man's switch rolls it back and
#   holds it until `galette device confirm` → summary. Everything is removed on exit; the
#   exit status is non-zero when any expected outcome did not happen.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
started=$SECONDS

loader="$repo/node_modules/tsx/dist/loader.mjs"
# ip(8) loads the hosts' XDP_PASS programs: name the bpffs, or it may take another bpf mount
# it finds (e.g. one bound into a chroot) for the machine's
export TC_BPF_MNT=/sys/fs/bpf
ops() { node --import "$loader" "$repo/scripts/demo-ops.ts" "$@"; }
galette() { # the `galette` CLI (as `pnpm galette`), each command shown on stderr
  printf '\033[2m  $ galette %s\033[0m\n' "$*" >&2
  node --import "$loader" "$repo/apps/controller/src/cli.ts" "$@"
}
agent_bin="$repo/apps/sbc-agent/bin/galette-agent"
step() { printf '\n\033[1m== %s\033[0m  [%d s]\n' "$*" $((SECONDS - started)); }
passed=0
failed=0
pass() {
  printf '  \033[32mPASS\033[0m %s\n' "$*"
  passed=$((passed + 1))
}
fail() {
  printf '  \033[31mFAIL\033[0m %s\n' "$*"
  failed=$((failed + 1))
}
check() { # check "what should hold" COMMAND...: PASS or FAIL line
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# a step the rest depends on: FAIL ends the demo
must() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else
    fail "$what"
    exit 1
  fi
}

host_target=$(node --import "$loader" "$repo/scripts/host-target.ts" "$(uname -m)") || exit 1

step "1. Chain plans"
for f in chains/*.toml; do
  galette chain plan "$f"
  echo
done

# --- resources we create, removed by cleanup() whatever happens -------------------------
work=$(mktemp -d "/tmp/galette-demo-XXXXXX")
controller_pid=""
agent_pids=()
relay_pids=()
namespaces=()
configs=()
cleanup() {
  local status=$?
  set +e
  for pid in "${agent_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${agent_pids[@]}"; do wait "$pid" 2>/dev/null; done
  # The agents leave their chain pinned on exit (by design); the demo removes it.
  for c in "${configs[@]}"; do
    "$agent_bin" --config "$c" --uninstall >>"$work/uninstall.log" 2>&1
  done
  for pid in "${relay_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  if [ -n "$controller_pid" ]; then kill -TERM "$controller_pid" 2>/dev/null; wait "$controller_pid" 2>/dev/null; fi
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  if [ "$status" -ne 0 ]; then
    echo "demo FAILED (exit $status); logs:" >&2
    for log in "$work"/*.log; do echo "--- $log (last 15 lines)" >&2; tail -n 15 "$log" >&2; done
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

two_port() { # TAG PREFIX: host A | device (p1, p2) | host B, as PREFIX_* variables
  local vars
  vars=$(ops two-port "$1" "$2")
  eval "$vars"
  local dev="${2}_dev" a="${2}_a_ns" b="${2}_b_ns"
  namespaces+=("${!dev}" "${!a}" "${!b}")
}
logged() { # TIMEOUT_S DEVICE TEXT: the device's agent log has TEXT within TIMEOUT_S
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    grep -qF -- "$3" "$work/$2.log" && return 0
    sleep 0.1
  done
  return 1
}
mac_of() { ip -n "$1" -j link show "$2" | node -e 'console.log(JSON.parse(require("fs").readFileSync(0))[0].address)'; }
neigh() { ip -n "$1" neigh replace "$2" lladdr "$3" dev "$4" nud permanent; }

step "2. The devices' networks"
# demo-1: host A | P1 demo-1 P2 | host B, one subnet. The chain's allow-list drops ARP
# (it admits only IPv4 sources it knows), so the hosts know each other's MAC statically.
two_port demo1 d1
neigh "$d1_a_ns" "$d1_b_ip" "$d1_b_mac" "$d1_a_if"
neigh "$d1_b_ns" "$d1_a_ip" "$d1_a_mac" "$d1_b_if"
echo "  demo-1: host A $d1_a_ip ($d1_a_ns) | $d1_p1 [$d1_dev] $d1_p2 | host B $d1_b_ip ($d1_b_ns)"
# demo-2: generator ⇄ device, each side in its own namespace
vars=$(ops veth demo2 d2)
eval "$vars"
namespaces+=("$d2_gen_ns" "$d2_dev")
echo "  demo-2: generator $d2_gen_ip ($d2_gen_ns) | $d2_dev_if [$d2_dev]"
# demo-3: host C | P1 demo-3 P2 | host D. Its own address is on P2, and the controller is
# reachable only through host D (a relay there): its control traffic crosses the chain.
two_port demo3 d3
d3_ip="${d3_b_ip%.*}.3"
ip -n "$d3_dev" addr add "$d3_ip/24" dev "$d3_p2"
neigh "$d3_dev" "$d3_b_ip" "$d3_b_mac" "$d3_p2"
neigh "$d3_b_ns" "$d3_ip" "$(mac_of "$d3_dev" "$d3_p2")" "$d3_b_if"
echo "  demo-3: host C $d3_a_ip | $d3_p1 [$d3_dev, own address $d3_ip on $d3_p2] $d3_p2 | host D $d3_b_ip (management: relay to the controller)"

step "3. Controller (data dir $work/controller)"
data="$work/controller"
# demo-3 reaches the controller at host D's address: the server certificate names it too
galette pki init --data "$data" --hosts "localhost,127.0.0.1,$d3_b_ip" >/dev/null
# shellcheck source=../packaging/lib-controller.sh
source "$repo/packaging/lib-controller.sh"
controller_start "$data" "$work/controller.log" 30 \
  env GALETTE_NF_TARGETS="bpf,$host_target" node --import "$loader" apps/controller/src/cli.ts \
  controller serve --data "$data" --listen 127.0.0.1:0 || exit 1
GALETTE_URL=$controller_url
GALETTE_TOKEN=$(galette token create --data "$data" --name demo --scopes admin,publish,deploy,read)
GALETTE_CA="$data/ca.crt"
export GALETTE_URL GALETTE_TOKEN GALETTE_CA
echo "  listening on $GALETTE_URL (pid $controller_pid)"
# host D's relay: TCP $d3_b_ip:8443 in host D's namespace → a unix socket → the controller
sock="$work/controller.sock"
relay() { # NS|- LISTEN CONNECT: a byte relay, started and listening
  local ns=$1 log
  log="$work/relay-${#relay_pids[@]}.log"
  shift
  if [ "$ns" = - ]; then
    node "$repo/packages/testkit/tools/relay.mjs" "$@" >"$log" 2>&1 &
  else
    nsenter --net="/run/netns/$ns" node "$repo/packages/testkit/tools/relay.mjs" "$@" >"$log" 2>&1 &
  fi
  relay_pids+=($!)
  for _ in $(seq 1 100); do
    grep -q listening "$log" && return 0
    sleep 0.1
  done
  echo "relay $* did not start" >&2
  return 1
}
relay - "unix:$sock" "tcp:${GALETTE_URL#https://}"
relay "$d3_b_ns" "tcp:$d3_b_ip:8443" "unix:$sock"
echo "  host D relays https://$d3_b_ip:8443 to it"
release="$work/release-key"
galette release-key init --out "$release" | sed 's/^/  /'

step "4. Enrol three devices and start their agents"
start_agent() { # NAME LABELS JSON-SETTINGS [NETNS to run the agent in]
  local name=$1 labels=$2 settings=$3 in_ns=${4:-}
  galette device enroll "$name" --labels "$labels" --out "$work/$name" --release-key "$release/release.pub" >/dev/null
  local config="$work/$name/agent.json"
  node -e '
    const fs = require("fs"); const [file, settings] = process.argv.slice(1);
    const c = JSON.parse(fs.readFileSync(file));
    Object.assign(c, { dataDir: "data", stateDir: "run", pollIntervalSeconds: 10,
      statusIntervalSeconds: 1, workerThreads: 1 }, JSON.parse(settings));
    fs.writeFileSync(file, JSON.stringify(c, null, 2));
  ' "$config" "$settings"
  configs+=("$config")
  if [ -n "$in_ns" ]; then
    nsenter --net="/run/netns/$in_ns" "$agent_bin" --config "$config" >"$work/$name.log" 2>&1 &
  else
    "$agent_bin" --config "$config" >"$work/$name.log" 2>&1 &
  fi
  agent_pids+=($!)
  echo "  $name ($labels): bundle $work/$name, agent pid $!, settings $settings"
}
start_agent demo-1 role=edge "{\"ports\":[\"$d1_p1\",\"$d1_p2\"],\"netns\":\"$d1_dev\"}"
start_agent demo-2 role=edge "{\"interface\":\"$d2_dev_if\",\"netns\":\"$d2_dev\"}"
start_agent demo-3 role=uplink "{\"ports\":[\"$d3_p1\",\"$d3_p2\"],\"netns\":\"$d3_dev\",\"controllerUrl\":\"https://$d3_b_ip:8443\",\"pollIntervalSeconds\":2}" "$d3_dev"

step "5. Publish the security chain's NFs (the controller compiles them: eBPF + $host_target)"
galette nf publish nf-examples/access-control nf-examples/weak-classifier nf-examples/dpi

step "5b. Release them: rebuild each NF here, compare every artifact digest with the controller's build, sign"
for nf in access-control weak-classifier dpi; do
  galette nf release "$nf" --key "$release/release.key"
done

lpm_key() { # IPv4 → nf::LpmKeyV4 {prefix_len: u32 LE = 32, addr} as hex
  printf '20000000%02x%02x%02x%02x' $(echo "$1" | tr . ' ')
}

step "6. Push chains/security.toml signed (devices check every signature), assign it to role=edge; demo-3 gets chain uplink"
galette chain push chains/security.toml --key "$release/release.key"
galette chain assign security --selector role=edge
galette chain push chains/uplink.toml --key "$release/release.key"
galette map set uplink access-control.allow_list --key "$release/release.key" "$(lpm_key "$d3_b_ip")=01000000"
galette chain assign uplink --devices demo-3 --grace 10s
must "demo-1 and demo-2 converge on security v1" ops wait security 90 demo-1 demo-2
must "demo-3 converges on uplink v1" ops wait uplink 90 demo-3
galette device list

ping_ab() { # NS IP: how many of 3 pings are answered
  nsenter --net="/run/netns/$1" ping -n -q -c 3 -i 0.2 -W 2 "$2" 2>/dev/null |
    sed -n 's/.* \([0-9]*\) received.*/\1/p' || true
}
forward() { # FROM(a|b) COUNT TAG KIND → "sent received" across demo-1
  if [ "$1" = a ]; then
    ops forward "$d1_a_ns" "$d1_a_if" "$d1_a_mac" "$d1_a_ip" "$d1_b_ns" "$d1_b_if" "$d1_b_mac" "$d1_b_ip" "$2" "$3" "$4"
  else
    ops forward "$d1_b_ns" "$d1_b_if" "$d1_b_mac" "$d1_b_ip" "$d1_a_ns" "$d1_a_if" "$d1_a_mac" "$d1_a_ip" "$2" "$3" "$4"
  fi
}
reflect() { # COUNT TAG KIND → "sent received" back from demo-2
  ops traffic "$d2_gen_ns" "$d2_gen_if" "$d2_gen_mac" "$d2_dev_mac" "$d2_gen_ip" "$d2_dev_ip" "$1" "$2" "$3"
}

step "7. Traffic before the allow-list is set: access-control drops everything"
read -r sent got < <(forward a 20 demo-before-ab normal)
echo "  demo-1: host A sent $sent frames to host B, $got arrived"
check "demo-1 drops A → B before the allow-list (0/$sent arrived)" [ "$got" -eq 0 ]
read -r sent got < <(reflect 20 demo-before-2 normal)
echo "  demo-2: sent $sent frames from $d2_gen_ip, $got came back"
check "demo-2 drops them before the allow-list (0/$sent back)" [ "$got" -eq 0 ]
sleep 1.5 # one status report later
echo "  counters (per NF instance: packets, then per Action variant):"
ops counters demo-1 demo-2

step "8. galette map set --key: allow hosts A and B and the generator (devices apply only signed entries)"
galette map set security access-control.allow_list --key "$release/release.key" \
  "$(lpm_key "$d1_a_ip")=01000000" "$(lpm_key "$d1_b_ip")=01000000" "$(lpm_key "$d2_gen_ip")=01000000"
galette map get security access-control.allow_list
# The change reaches each agent (ws notification → poll → apply): wait for it in their logs.
must "demo-1 applied the allow-list" logged 10 demo-1 '"map":"access-control.allow_list","entries":3'
must "demo-2 applied the allow-list" logged 10 demo-2 '"map":"access-control.allow_list","entries":3'

step "9. Traffic again: demo-1 forwards A ⇄ B, demo-2 sends it back; UDP flows go through the userland DPI"
read -r sent got < <(forward a 20 demo-after-ab normal)
check "demo-1 forwards host A → host B ($got/$sent arrived)" [ "$got" -eq "$sent" ]
read -r sent got < <(forward b 20 demo-after-ba normal)
check "demo-1 forwards host B → host A ($got/$sent arrived)" [ "$got" -eq "$sent" ]
answered=$(ping_ab "$d1_a_ns" "$d1_b_ip")
check "ping host A → host B through demo-1: ${answered:-0}/3 answered" [ "${answered:-0}" -eq 3 ]
read -r sent got < <(forward a 12 demo-clean-flow-ab udp)
check "demo-1: a clean UDP flow passes the DPI A → B ($got/$sent arrived)" [ "$got" -eq "$sent" ]
read -r sent got < <(forward b 12 demo-clean-flow-ba udp)
check "demo-1: a clean UDP flow passes the DPI B → A ($got/$sent arrived)" [ "$got" -eq "$sent" ]
read -r sent got < <(forward a 12 demo-GALETTE-EVIL-ab udp)
check "demo-1: the DPI drops a flow carrying the signature ($got/$sent arrived)" [ "$got" -eq 0 ]
read -r sent got < <(reflect 20 demo-after-2 normal)
check "demo-2 sends frames back ($got/$sent)" [ "$got" -eq "$sent" ]
read -r sent got < <(reflect 12 demo-clean-flow-2 udp)
check "demo-2: a clean UDP flow passes the DPI ($got/$sent back)" [ "$got" -eq "$sent" ]
read -r sent got < <(reflect 12 demo-GALETTE-EVIL-2 udp)
check "demo-2: the DPI drops a flow carrying the signature ($got/$sent back)" [ "$got" -eq 0 ]

step "10. Counters again: access-control now Allowed, the weak classifier sends new flows to DPI (Suspicious)"
sleep 1.5
ops counters demo-1 demo-2
check "the counters add up on both devices (each NF saw what the one before sent it)" ops counters-agree demo-1 demo-2

step "11. A chain version that uses an unreleased build of dpi: demo-1 and demo-2 refuse it"
mkdir -p "$work/src"
tar -c --exclude=target -C nf-examples dpi | tar -x -C "$work/src"
printf '\n// a change nobody released\n' >>"$work/src/dpi/src/lib.rs"
galette nf publish "$work/src/dpi"
galette chain push chains/security.toml --key "$release/release.key"
must "demo-1 and demo-2 refuse security v2 and keep v1" ops refused security 2 60 demo-1 demo-2
galette device list
read -r sent got < <(forward a 20 demo-refused-ab normal)
check "demo-1 still forwards host A → host B on v1 ($got/$sent)" [ "$got" -eq "$sent" ]
read -r sent got < <(reflect 20 demo-refused-2 normal)
check "demo-2 still sends frames back on v1 ($got/$sent)" [ "$got" -eq "$sent" ]

step "12. Dead-man's switch: uplink v2 drops the management host's frames, cutting demo-3 off the controller"
# the same chain with the management host's frames dropped instead of passed to the device
mkdir -p "$work/uplink-v2"
sed 's/^to = \["pass", "tx"\]$/to = ["drop", "tx"]/' chains/uplink.toml >"$work/uplink-v2/uplink.toml"
grep -q '^to = \["drop", "tx"\]$' "$work/uplink-v2/uplink.toml" || { echo "chains/uplink.toml: no pass exit to turn into drop" >&2; exit 1; }
galette chain push "$work/uplink-v2/uplink.toml" --key "$release/release.key"
galette chain assign uplink --devices demo-3 --grace 10s
must "demo-3 rolls uplink v2 back to v1 from its cache and reports why" ops rolled-back uplink 2 1 90 demo-3
grep -F '"msg":"rolling back"' "$work/demo-3.log" |
  node -e 'for (const l of require("fs").readFileSync(0, "utf8").trim().split("\n")) { const j = JSON.parse(l); const to = j.restore ? `${j.restore.chain} v${j.restore.version}` : "nothing"; console.log(`  agent log: rolling back ${j.chain} v${j.version} → ${to} (cached)`); }'
# A status report the agent queued while cut off can land just after its rollback report
# (its connection completes once the path is back); the next report, a second later, wins.
for _ in 1 2 3 4 5; do
  listing=$(galette device list)
  grep -q "demo-3: rolled back uplink v2 .*galette device confirm demo-3" <<<"$listing" && break
  sleep 1
done
echo "$listing"
check "galette device list shows the rollback and how to confirm it" \
  grep -q "demo-3: rolled back uplink v2 .*galette device confirm demo-3" <<<"$listing"
sleep 6 # three polls of demo-3
check "demo-3 holds v2 back while unconfirmed (still on v1 after three polls)" ops rolled-back uplink 2 1 1 demo-3
check "demo-3's agent says why it does not install v2" \
  grep -qF "not installing the version the dead-man's switch rolled back until the operator confirms it" "$work/demo-3.log"
galette device confirm demo-3
check "after galette device confirm, demo-3 installs v2 without the switch (and is cut off, as confirmed)" \
  logged 30 demo-3 "the operator confirmed the held-back version: installing it without the dead-man's switch"

step "Summary"
echo "  $passed checks passed, $failed failed, in $((SECONDS - started)) s"
if [ "$failed" -ne 0 ]; then
  echo "demo: $failed expected outcome(s) did not happen (FAIL lines above)" >&2
  exit 1
fi
echo "  demo-1 forwarded A ⇄ B through the signed security chain on two ports, demo-2 sent frames back,"
echo "  both applied the signed allow-list and refused a version with an unreleased build while traffic kept flowing;"
echo "  demo-3's dead-man's switch rolled back a version that cut it off and held it until confirmed"

step "Web console"
console_token=$(galette token create --data "$data" --name console --scopes read,deploy --expires 1h)
echo "  open $GALETTE_URL/ and log in with this token (read, deploy; expires in 1 h):"
echo "    $console_token"
echo "  the certificate is the demo CA's ($GALETTE_CA): the browser asks before trusting it"
if [ -n "${DEMO_HOLD:-}" ] && [ -t 0 ]; then
  read -r -p "  the demo keeps running until you press Enter… " _
else
  echo "  (everything stops as the demo exits; DEMO_HOLD=1 make demo keeps it up until Enter)"
fi
