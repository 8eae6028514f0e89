"""Part of scripts/check-deploy: every way of running playsync stops it with SIGTERM and waits
at least DRAIN_SECS + 5 s before killing it (SIGTERM drains clients over DRAIN_SECS, default
10, and the process exits within DRAIN_SECS + 5 s).

Usage: check-deploy-timeouts.py COMPOSE_JSON  (the output of `docker-compose config --format
json`); reads Dockerfile, deploy/playsync.service and deploy/supervisor/playsync.conf itself.
Prints nothing and exits 0 when all is well; prints each problem and exits 1 otherwise.
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
    dockerfile = f.read()
if not re.search(r"^STOPSIGNAL\s+SIGTERM\s*$", dockerfile, re.M):
    problems.append("Dockerfile: no STOPSIGNAL SIGTERM")

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
    for line in f:
        line = line.strip()
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

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
