#!/usr/bin/env bash
# The main job, end to end on this machine:
#   plan every chain → start a controller (temp data dir) → enrol two devices → start two
#   galette-agents, each driving the device side of a veth pair in its own namespaces →
#   publish the security chain's NFs → release them (rebuilt here, signed with a release
#   key the devices pin; the controller never holds it) → push chains/security.toml
#   signed and assign it → send traffic through both devices → open the allow-list with a
#   signed `galette map set` → traffic again → show the counters the agents report →
#   push a version that uses an unreleased build: both devices refuse it and keep
#   forwarding → summary. Everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

loader="$repo/node_modules/tsx/dist/loader.mjs"
ops() { node --import "$loader" "$repo/scripts/demo-ops.ts" "$@"; }
galette() { pnpm -s galette "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

host_target=$(node --import "$loader" "$repo/scripts/host-target.ts" "$(uname -m)") || exit 1

step "1. Chain plans"
for f in chains/*.toml; do
  galette chain validate --structure-only "$f"
  galette chain plan "$f"
  echo
done

# --- resources we create, removed by cleanup() whatever happens -------------------------
id="$$"
work=$(mktemp -d "/tmp/galette-demo-XXXXXX")
controller_pid=""
agent_pids=()
namespaces=()
configs=()
cleanup() {
  local status=$?
  set +e
  for pid in "${agent_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${agent_pids[@]}"; do wait "$pid" 2>/dev/null; done
  # The agents leave their chain pinned on exit (by design); the demo removes it.
  for c in "${configs[@]}"; do
    "$repo/apps/sbc-agent/bin/galette-agent" --config "$c" --uninstall >>"$work/uninstall.log" 2>&1
  done
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

step "2. Controller (data dir $work/controller)"
data="$work/controller"
galette pki init --data "$data" >/dev/null
GALETTE_NF_TARGETS="bpf,$host_target" node --import "$loader" apps/controller/src/cli.ts \
  controller serve --data "$data" --listen 127.0.0.1:0 >"$work/controller.log" 2>&1 &
controller_pid=$!
for _ in $(seq 1 300); do
  [ -f "$data/controller.json" ] && break
  kill -0 "$controller_pid" 2>/dev/null || { echo "controller exited" >&2; exit 1; }
  sleep 0.1
done
[ -f "$data/controller.json" ] || { echo "controller did not start within 30 s" >&2; exit 1; }
GALETTE_URL=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).url)' "$data/controller.json")
GALETTE_TOKEN=$(galette token create --data "$data" --name demo --scopes admin,publish,deploy,read)
GALETTE_CA="$data/ca.crt"
export GALETTE_URL GALETTE_TOKEN GALETTE_CA
echo "  listening on $GALETTE_URL (pid $controller_pid)"
release="$work/release-key"
galette release-key init --out "$release" | sed 's/^/  /'

step "3. Enrol two devices and start their agents"
declare -A gen_ns gen_if dev_ip gen_ip
for n in 1 2; do
  name="demo-$n"
  galette device enroll "$name" --labels role=edge --out "$work/$name" --release-key "$release/release.pub" >/dev/null
  # generator (traffic source) ⇄ device under test, each side in its own namespace
  gns="gdemo-$id-$n-gen"; dns="gdemo-$id-$n-dev"
  gif="gd${id}${n}g"; dif="gd${id}${n}d"
  ip netns add "$gns"; namespaces+=("$gns")
  ip netns add "$dns"; namespaces+=("$dns")
  for ns in "$gns" "$dns"; do
    nsenter --net="/run/netns/$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
  done
  ip link add "$gif" netns "$gns" type veth peer name "$dif" netns "$dns"
  ip -n "$gns" link set "$gif" address 02:00:00:00:0$n:0a
  ip -n "$dns" link set "$dif" address 02:00:00:00:0$n:0b
  ip -n "$gns" link set "$gif" up
  ip -n "$dns" link set "$dif" up
  ops xdp-pass "$gns" "$gif" # XDP_TX from the device arrives only with an XDP program here
  gen_ns[$n]=$gns; gen_if[$n]=$gif; gen_ip[$n]="10.99.$n.1"; dev_ip[$n]="10.99.$n.2"
  config="$work/$name/agent.json"
  node -e '
    const fs = require("fs"); const [file, iface, netns] = process.argv.slice(1);
    const c = JSON.parse(fs.readFileSync(file));
    Object.assign(c, { interface: iface, netns, dataDir: "data", stateDir: "run",
      pollIntervalSeconds: 10, statusIntervalSeconds: 1, workerThreads: 1 });
    fs.writeFileSync(file, JSON.stringify(c, null, 2));
  ' "$config" "$dif" "$dns"
  configs+=("$config")
  "$repo/apps/sbc-agent/bin/galette-agent" --config "$config" >"$work/$name.log" 2>&1 &
  agent_pids+=($!)
  echo "  $name: bundle $work/$name, agent pid $!, interface $dif in namespace $dns"
done

step "4. Publish the security chain's NFs (the controller compiles them: eBPF + $host_target)"
galette nf publish nf-examples/access-control nf-examples/weak-classifier nf-examples/dpi

step "4b. Release them: rebuild each NF here, compare every artifact digest with the controller's build, sign"
for nf in access-control weak-classifier dpi; do
  galette nf release "$nf" --key "$release/release.key"
done

step "5. Push chains/security.toml signed (devices check every signature) and assign it to role=edge"
galette chain push chains/security.toml --key "$release/release.key"
galette chain assign security --selector role=edge
ops wait security 60 demo-1 demo-2
galette device list

traffic() { # n tag count kind → "sent received"
  local n=$1
  ops traffic "${gen_ns[$n]}" "${gen_if[$n]}" "02:00:00:00:0$n:0a" "02:00:00:00:0$n:0b" \
    "${gen_ip[$n]}" "${dev_ip[$n]}" "$3" "$2" "$4"
}
lpm_key() { # IPv4 → nf::LpmKeyV4 {prefix_len: u32 LE = 32, addr} as hex
  printf '20000000%02x%02x%02x%02x' $(echo "$1" | tr . ' ')
}
declare -A before after dpi_clean dpi_evil

step "6. Traffic before the allow-list is set: access-control drops everything"
for n in 1 2; do
  read -r sent got < <(traffic "$n" "demo-before-$n" 20 normal)
  before[$n]=$got
  echo "  demo-$n: sent $sent frames from ${gen_ip[$n]}, $got came back"
done
sleep 1.5 # one status report later
echo "  counters (per NF instance: packets, then per Action variant):"
ops counters demo-1 demo-2

step "7. galette map set --key: allow both generators (devices apply only signed entries)"
galette map set security access-control.allow_list --key "$release/release.key" \
  "$(lpm_key "${gen_ip[1]}")=01000000" "$(lpm_key "${gen_ip[2]}")=01000000"
galette map get security access-control.allow_list
# The change reaches each agent (ws notification → poll → apply): wait for it in their logs.
for n in 1 2; do
  for _ in $(seq 1 100); do
    grep -q '"map":"access-control.allow_list","entries":2' "$work/demo-$n.log" && break
    sleep 0.1
  done
  grep -q '"map":"access-control.allow_list","entries":2' "$work/demo-$n.log" ||
    { echo "demo-$n did not apply the allow-list within 10 s" >&2; exit 1; }
  echo "  demo-$n applied the allow-list"
done

step "8. Traffic again: XDP sends it back; a UDP flow goes through the userland DPI"
for n in 1 2; do
  read -r sent got < <(traffic "$n" "demo-after-$n" 20 normal)
  after[$n]=$got
  read -r _ clean < <(traffic "$n" "demo-clean-flow-$n" 12 udp)
  read -r _ evil < <(traffic "$n" "demo-GALETTE-EVIL-$n" 12 udp)
  dpi_clean[$n]=$clean; dpi_evil[$n]=$evil
  echo "  demo-$n: normal $got/$sent back; clean UDP flow $clean/12 back; flow with a signature $evil/12 back"
done

step "9. Counters again: access-control now Allowed, the weak classifier sends new flows to DPI (Suspicious)"
sleep 1.5
ops counters demo-1 demo-2

step "10. A chain version that uses an unreleased build of dpi: both devices refuse it"
mkdir -p "$work/src"
tar -c --exclude=target -C nf-examples dpi | tar -x -C "$work/src"
printf '\n// a change nobody released\n' >>"$work/src/dpi/src/lib.rs"
galette nf publish "$work/src/dpi"
galette chain push chains/security.toml --key "$release/release.key"
ops refused security 2 60 demo-1 demo-2
galette device list
declare -A refused_back
for n in 1 2; do
  read -r sent got < <(traffic "$n" "demo-refused-$n" 20 normal)
  refused_back[$n]=$got
  echo "  demo-$n: still on version 1, $got/$sent back"
done

step "Summary"
ok=1
for n in 1 2; do
  verdict="ok"
  if [ "${before[$n]}" -ne 0 ] || [ "${after[$n]}" -lt 20 ] || [ "${dpi_clean[$n]}" -lt 12 ] || [ "${dpi_evil[$n]}" -ne 0 ] ||
    [ "${refused_back[$n]}" -lt 20 ]; then
    verdict="UNEXPECTED"; ok=0
  fi
  printf '  demo-%s: before allow-list %2s/20 back, after %2s/20, DPI clean %2s/12, DPI evil %2s/12, unreleased v2 refused and %2s/20 back  [%s]\n' \
    "$n" "${before[$n]}" "${after[$n]}" "${dpi_clean[$n]}" "${dpi_evil[$n]}" "${refused_back[$n]}" "$verdict"
done
if [ "$ok" -ne 1 ]; then
  echo "demo: traffic did not behave as the security chain says" >&2
  exit 1
fi
echo "  two devices converged on chain security (signed), forwarded traffic, applied the signed allow-list, and refused a version with an unreleased build while traffic kept flowing"

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
