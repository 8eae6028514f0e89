"""Drives a playsync room with python-socketio clients, the way a seed client would.

Usage: python3 rooms_client.py URL TRANSPORT   (TRANSPORT: websocket or polling)
Exits 0 when every step behaved as the seed protocol says; prints what failed otherwise.
"""

import queue
import sys

import socketio

URL, TRANSPORT = sys.argv[1], sys.argv[2]
WAIT = 10


def client(name):
    sio = socketio.Client(reconnection=False)
    events = queue.Queue()

    @sio.on("*")
    def any_event(event, *args):
        events.put((event, args[0] if args else None))

    sio.connect(URL, transports=[TRANSPORT], wait_timeout=WAIT)
    return sio, events


def expect(events, name):
    while True:
        event, data = events.get(timeout=WAIT)
        if event == name:
            return data


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)


host, host_events = client("host")
check(expect(host_events, "connected")["message"] == "connected", "connected greeting")
ack = host.call("create_room", {"room_id": "py", "track": {"name": "t"}, "current_time": 0}, timeout=WAIT)
check(ack["ok"] is True and ack["user_count"] == 1, f"create ack {ack}")
check(expect(host_events, "room_created")["room_id"] == "py", "room_created")

member, member_events = client("member")
member.emit("join_room", {"room_id": "py"})
joined = expect(member_events, "room_joined")
check(joined["user_count"] == 2 and joined["current_track"] == {"name": "t"}, f"room_joined {joined}")
check(expect(member_events, "room_users") == {"count": 2}, "room_users")
check(expect(member_events, "sync_state")["current_track"] == {"name": "t"}, "sync_state")

host.emit("pause", {"room_id": "py", "current_time": 0})
check(expect(member_events, "pause")["current_time"] == 0, "pause at 0")
host.emit("seek", {"room_id": "py", "current_time": 61.5})
check(expect(member_events, "seek")["current_time"] == 61.5, "seek")

nack = member.call("play", {"room_id": "py"}, timeout=WAIT)
check(nack == {"ok": False, "code": "not_host", "message": nack.get("message")}, f"non-host ack {nack}")

member.emit("join_room", "not an object")
check(expect(member_events, "error")["code"] == "invalid_payload", "error on bad payload")

host.disconnect()
check(expect(member_events, "become_host") == {"room_id": "py"}, "become_host")
state = member.call("get_room_state", {"room_id": "py"}, timeout=WAIT)
check(state["user_count"] == 1 and state["is_playing"] is False and state["current_time"] == 61.5, f"state {state}")
member.disconnect()
print("ok", flush=True)
