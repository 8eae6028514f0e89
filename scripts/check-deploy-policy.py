"""Part of scripts/check-deploy: what the deployment files must keep saying, beyond syntax.

- Every way of running playsync stops it with SIGTERM and waits at least DRAIN_SECS + 5 s
  before killing it (SIGTERM drains clients over DRAIN_SECS, default 10, and the process exits
  within DRAIN_SECS + 5 s).
- The image runs as a non-root user, with a health check, the data volume and both ports.
- The systemd unit keeps its hardening.
- nginx keeps Socket.IO sticky with the WebSocket upgrade headers, and SSE unbuffered.

Usage: check-deploy-policy.py COMPOSE_JSON  (the output of `docker-compose config --format
json`); reads Dockerfile, deploy/playsync.service, deploy/supervisor/playsync.conf and
deploy/nginx.conf itself. Prints nothing and exits 0 when all is well; prints each problem and
exits 1 otherwise.
"""

import configparser
import json
import re
import sys

DEFAULT_DRAIN_SECS = 10
EXIT_MARGIN_SECS = 5
problems = []


def need(where, stop_secs, drain_secs):
    if stop_secs is None:
        problems.append(f"{where}: no stop timeout")
    elif stop_secs < drain_secs + EXIT_MARGIN_SECS:
        problems.append(
            f"{where}: stop timeout {stop_secs:g} s < DRAIN_SECS {drain_secs:g} + {EXIT_MARGIN_SECS} s"
        )


def seconds(text):
    """A duration: `30`, `30s`, `1min`, `1m30s`, `1h` (systemd's and Compose's forms)."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"h": 3600, "hr": 3600, "min": 60, "m": 60, "s": 1, "sec": 1, "ms": 0.001}
    total, pos = 0.0, 0
    for m in re.finditer(r"\s*(\d+(?:\.\d+)?)\s*(min|sec|hr|ms|h|m|s)", text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos > 0 else None


# Dockerfile: SIGTERM is the stop signal (the stop timeout is the runner's: documented).
with open("Dockerfile") as f:
    dockerfile = f.read().replace("\\\n", " ")  # continuation lines joined
runtime_stage = re.split(r"^FROM\s", dockerfile, flags=re.M)[-1]
for pattern, what in [
    (r"^STOPSIGNAL\s+SIGTERM\s*$", "STOPSIGNAL SIGTERM"),
    (r"^HEALTHCHECK\s.*playsync\",\s*\"healthcheck\"", "a HEALTHCHECK running `playsync healthcheck`"),
    (r"^VOLUME\s+\[\"/data\"\]\s*$", 'VOLUME ["/data"]'),
    (r"^EXPOSE\s+3000\s+5051\s*$", "EXPOSE 3000 5051"),
    (r"TTS_DATA_DIR=/data\b", "TTS_DATA_DIR=/data"),
    (r"^USER\s+[1-9]\d*(:[1-9]\d*)?\s*$", "a non-root numeric USER"),
]:
    if not re.search(pattern, runtime_stage, re.M):
        problems.append(f"Dockerfile runtime stage: no {what}")

# Compose: every service running the playsync image.
with open(sys.argv[1]) as f:
    compose = json.load(f)
playsync_services = {
    name: svc
    for name, svc in compose["services"].items()
    if "build" in svc or str(svc.get("image", "")).startswith("playsync")
}
if len(playsync_services) < 2:
    problems.append(f"compose: expected at least two playsync services, found {sorted(playsync_services)}")
for name, svc in sorted(playsync_services.items()):
    env = svc.get("environment") or {}
    drain = float(env.get("DRAIN_SECS") or DEFAULT_DRAIN_SECS)
    if svc.get("stop_signal", "SIGTERM") != "SIGTERM":
        problems.append(f"compose {name}: stop_signal is not SIGTERM")
    grace = svc.get("stop_grace_period")
    need(f"compose {name} stop_grace_period", seconds(grace) if grace else 10.0, drain)
    test = (svc.get("healthcheck") or {}).get("test") or []
    if "healthcheck" not in test:
        problems.append(f"compose {name}: the health check does not run `playsync healthcheck`")

# systemd unit.
drain, stop, signal = DEFAULT_DRAIN_SECS, None, "SIGTERM"
with open("deploy/playsync.service") as f:
    unit_lines = [line.strip() for line in f]
for required in [
    "DynamicUser=yes",
    "StateDirectory=playsync",
    "Environment=TTS_DATA_DIR=%S/playsync",
    "EnvironmentFile=-/etc/playsync/env",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter=@system-service",
    "Restart=always",
]:
    key = required.split("=", 1)[0] + "="
    lines = [line for line in unit_lines if line.startswith(key)]
    # Settings that add up (Environment=, SystemCallFilter=) need the line; others, as the
    # last word (a later line overrides an earlier one).
    adds_up = key in ("Environment=", "SystemCallFilter=")
    if required not in lines or (not adds_up and lines[-1] != required):
        problems.append(f"playsync.service: lacks {required}")
for line in unit_lines:
    if m := re.fullmatch(r"Environment=DRAIN_SECS=(\S+)", line):
        drain = float(m.group(1))
    elif m := re.fullmatch(r"TimeoutStopSec=(.+)", line):
        stop = seconds(m.group(1))
    elif m := re.fullmatch(r"KillSignal=(.+)", line):
        signal = m.group(1)
if signal not in ("SIGTERM", "TERM", "15"):
    problems.append(f"playsync.service: KillSignal={signal}, not SIGTERM")
need("playsync.service TimeoutStopSec", stop, drain)

# Supervisor entry.
parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
parser.read("deploy/supervisor/playsync.conf")
program = parser["program:playsync"]
env = dict(re.findall(r'(\w+)="([^"]*)"', program.get("environment", "")))
drain = float(env.get("DRAIN_SECS", DEFAULT_DRAIN_SECS))
if program.get("stopsignal", "TERM").upper() not in ("TERM", "SIGTERM"):
    problems.append("supervisor: stopsignal is not TERM")
need("supervisor stopwaitsecs", float(program.get("stopwaitsecs", "10")), drain)

# nginx: the locations' directives (no nested blocks inside a location).
with open("deploy/nginx.conf") as f:
    nginx = re.sub(r"#[^\n]*", "", f.read())
locations = dict(re.findall(r"location\s+([^{]+?)\s*\{([^}]*)\}", nginx))
upstreams = dict(re.findall(r"upstream\s+(\S+)\s*\{([^}]*)\}", nginx))


def directives(block):
    return {" ".join(d.split()) for d in block.split(";") if d.strip()}


socketio = directives(locations.get("/socket.io/", ""))
sticky = next((u for u in upstreams if f"proxy_pass http://{u}" in socketio), None)
if sticky is None or not re.search(r"\b(hash|ip_hash|sticky)\b", upstreams[sticky]):
    problems.append("nginx: /socket.io/ does not go to a sticky upstream (hash, ip_hash)")
for d in [
    "proxy_http_version 1.1",
    "proxy_set_header Upgrade $http_upgrade",
    "proxy_set_header Connection $connection_upgrade",
]:
    if d not in socketio:
        problems.append(f"nginx /socket.io/: lacks {d}")
if not any(d.startswith("proxy_read_timeout") for d in socketio):
    problems.append("nginx /socket.io/: no proxy_read_timeout (WebSockets are long-lived)")
events = directives(locations.get("/api/events/", ""))
for d in ["proxy_buffering off", "proxy_http_version 1.1"]:
    if d not in events:
        problems.append(f"nginx /api/events/ (SSE): lacks {d}")
if not any(d.startswith("proxy_read_timeout") for d in events):
    problems.append("nginx /api/events/ (SSE): no proxy_read_timeout above the keep-alive")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
