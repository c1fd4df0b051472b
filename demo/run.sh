#!/usr/bin/env bash
# Try secret-agent end to end without a Coder deployment: start the bundled dev server
# with demo/seed.json, sync once into a throwaway home directory, and show the result.
# As in a real workspace, metadata comes over REST (session token) and the values over
# the emulated workspace-agent RPC (agent token): the dev server never sends them inline.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/secret-agent-demo.XXXXXX")
echo "== demo workspace: $work"

secret-agent dev-server --seed "$here/seed.json" --port 0 >"$work/server.out" 2>"$work/server.err" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q '^CODER_AGENT_TOKEN=' "$work/server.out" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.err"; exit 1; }
  sleep 0.1
done
head -n 1 "$work/server.out"
export CODER_URL CODER_SESSION_TOKEN CODER_AGENT_URL CODER_AGENT_TOKEN
CODER_URL=$(sed -n 's/^CODER_URL=//p' "$work/server.out")
CODER_SESSION_TOKEN=$(sed -n 's/^CODER_SESSION_TOKEN=//p' "$work/server.out")
CODER_AGENT_URL=$(sed -n 's/^CODER_AGENT_URL=//p' "$work/server.out")
CODER_AGENT_TOKEN=$(sed -n 's/^CODER_AGENT_TOKEN=//p' "$work/server.out")

mkdir -p "$work/home"
cat >"$work/config.toml" <<TOML
[sync]
home = "$work/home"
allowed_roots = ["$work/home"]
state_dir = "$work/state"

[env_file]
path = "$work/home/.config/secret-agent/secrets.env"

[log]
format = "console"
TOML
export SECRET_AGENT_CONFIG="$work/config.toml"

echo "== secret-agent run --once"
secret-agent run --once
echo "== files written (mode, size, path)"
find "$work/home" -type f -printf '%m %6s %p\n' | sort -k3
echo "== the env file, sourced by bash: variable names and value lengths"
bash -c 'set -a; . "$1"; for n in GITHUB_TOKEN NPM_TOKEN; do v=${!n}; echo "$n: ${#v} chars"; done' _ \
  "$work/home/.config/secret-agent/secrets.env"
echo "== secret-agent exec: a command run with the secrets in its environment"
secret-agent exec -- sh -c 'echo "GITHUB_TOKEN has ${#GITHUB_TOKEN} characters"'
echo "== secret-agent check (a dry run: names, paths, modes, short hashes; never values)"
secret-agent check
echo "== done; remove $work when you have looked around"
