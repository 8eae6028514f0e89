"""Peer of seed 1 (music-sync server) on Flask + Flask-SocketIO.

Written for playsync's benchmarks: the seed's rooms, events and HTTP API, as the seed's own
Flask-SocketIO server does them. See ../README.md for what is simplified.

    PORT=3000 MODE=threading python server.py   # Werkzeug dev server, threads, simple-websocket
    PORT=3000 MODE=eventlet  python server.py   # eventlet.wsgi server (what gunicorn's eventlet worker runs)

The mode may also be given as the first argument: `python server.py eventlet`. The seed's
production command works too (the mode then comes from MODE):

    MODE=eventlet gunicorn --worker-class eventlet -w 1 --bind 127.0.0.1:3000 server:app
"""

import os
import sys

if __name__ == "__main__" and len(sys.argv) > 1:
    MODE = sys.argv[1].strip().lower()
else:
    MODE = os.environ.get("MODE", "threading").strip().lower()
if MODE not in ("threading", "eventlet"):
    sys.exit(f"MODE must be 'threading' or 'eventlet', not {MODE!r}")
if MODE == "eventlet":
    import eventlet

    eventlet.monkey_patch()

import logging  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402

from flask import Flask, jsonify, request  # noqa: E402
from flask_cors import CORS  # noqa: E402
from flask_socketio import SocketIO, emit, join_room  # noqa: E402

PORT = int(os.environ.get("PORT", "3000"))
HOST = os.environ.get("HOST", "127.0.0.1")
CLEANUP_SECS = 60

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("music-sync")
if not os.environ.get("LOG_ACCESS"):
    # One access-log line per long-polling request would dominate a benchmark.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "music-sync-peer")
CORS(app)
socketio = SocketIO(
    app,
    async_mode=MODE,
    cors_allowed_origins="*",
    max_http_buffer_size=64 * 1024,
    logger=False,
    engineio_logger=False,
)

# room_id -> room dict; sid -> room_id (the last room the sid created or joined, as in the seed)
rooms = {}
user_rooms = {}


def current_time(room):
    state = room["play_state"]
    if state["is_playing"]:
        return state["current_time"] + (time.time() - room["last_update"])
    return state["current_time"]


def play_state(room):
    state = room["play_state"]
    return {
        "current_track": state["current_track"],
        "is_playing": state["is_playing"],
        "current_time": current_time(room),
    }


def set_time(room, t):
    room["play_state"]["current_time"] = t
    room["last_update"] = time.time()


def room_info(room):
    return {
        "id": room["id"],
        "host_id": room["host_id"],
        "user_count": len(room["users"]),
        "created_at": room["created_at"],
        **play_state(room),
    }


def host_room(data):
    """The room of a host command, or None when it is unknown or the sender is not its host."""
    if not isinstance(data, dict):
        return None
    room = rooms.get(data.get("room_id"))
    if room is None or room["host_id"] != request.sid:
        return None
    return room


def time_or_current(data, room):
    t = data.get("current_time")
    return current_time(room) if t is None else t


@socketio.on("connect")
def on_connect(auth=None):
    emit("connected", {"message": "Connected to music sync server"})


@socketio.on("create_room")
def on_create_room(data):
    room_id = data.get("room_id") if isinstance(data, dict) else None
    if room_id is None or room_id == "":
        emit("error", {"message": "Room ID is required"})
        return
    if room_id in rooms:
        emit("error", {"message": "Room already exists"})
        return
    t = data.get("current_time")
    rooms[room_id] = {
        "id": room_id,
        "host_id": request.sid,
        "users": [request.sid],
        "created_at": datetime.now().isoformat(),
        "play_state": {
            "current_track": data.get("track"),
            "is_playing": True,
            "current_time": 0 if t is None else t,
        },
        "last_update": time.time(),
    }
    user_rooms[request.sid] = room_id
    join_room(room_id)
    emit("room_created", {"room_id": room_id, "user_count": 1})
    emit("room_users", {"count": 1}, to=room_id)
    log.info("room %s created by %s", room_id, request.sid)


@socketio.on("join_room")
def on_join_room(data):
    room_id = data.get("room_id") if isinstance(data, dict) else None
    if room_id is None or room_id == "":
        emit("error", {"message": "Room ID is required"})
        return
    room = rooms.get(room_id)
    if room is None:
        emit("error", {"message": "Room does not exist"})
        return
    if request.sid not in room["users"]:
        room["users"].append(request.sid)
    user_rooms[request.sid] = room_id
    join_room(room_id)
    emit("room_joined", {"room_id": room_id, "user_count": len(room["users"]), **play_state(room)})
    emit("room_users", {"count": len(room["users"])}, to=room_id)
    if room["play_state"]["current_track"]:
        emit("sync_state", play_state(room))


@socketio.on("track_change")
def on_track_change(data):
    room = host_room(data)
    if room is None:
        return
    state = room["play_state"]
    state["current_track"] = data.get("track")
    state["is_playing"] = True
    set_time(room, 0)
    emit("track_change", {"track": state["current_track"], "current_time": 0},
         to=room["id"], include_self=False)


def time_command(event, playing):
    """play / pause / seek / sync_progress: the host sets the time (and for play and pause
    whether it plays); the other members get the event."""
    def handler(data):
        room = host_room(data)
        if room is None:
            return
        t = time_or_current(data, room)
        if playing is not None:
            room["play_state"]["is_playing"] = playing
        set_time(room, t)
        emit(event, {"current_time": t}, to=room["id"], include_self=False)
    socketio.on_event(event, handler)


for _event, _playing in [("play", True), ("pause", False), ("seek", None), ("sync_progress", None)]:
    time_command(_event, _playing)


@socketio.on("get_room_state")
def on_get_room_state(data):
    room = rooms.get(data.get("room_id")) if isinstance(data, dict) else None
    if room is None:
        emit("error", {"message": "Room does not exist"})
        return
    emit("room_state", {"room_id": room["id"], "user_count": len(room["users"]), **play_state(room)})


@socketio.on("disconnect")
def on_disconnect(*_reason):
    sid = request.sid
    room_id = user_rooms.pop(sid, None)
    room = rooms.get(room_id) if room_id is not None else None
    if room is None:
        return
    if sid in room["users"]:
        room["users"].remove(sid)
    if not room["users"]:
        del rooms[room_id]
        log.info("room %s deleted (empty)", room_id)
        return
    if room["host_id"] == sid:
        room["host_id"] = room["users"][0]
        socketio.emit("become_host", {"room_id": room_id}, to=room["host_id"])
    socketio.emit("room_users", {"count": len(room["users"])}, to=room_id)


def cleanup_empty_rooms():
    while True:
        socketio.sleep(CLEANUP_SECS)
        for room_id in [rid for rid, r in list(rooms.items()) if not r["users"]]:
            rooms.pop(room_id, None)


@app.route("/")
def index():
    return jsonify({
        "status": "ok",
        "message": "Music sync server is running",
        "rooms": len(rooms),
        "timestamp": datetime.now().isoformat(),
    })


@app.route("/rooms")
def list_rooms():
    infos = [room_info(r) for r in list(rooms.values())]
    return jsonify({"rooms": infos, "count": len(infos)})


@app.route("/room/<room_id>")
def get_room(room_id):
    room = rooms.get(room_id)
    if room is None:
        return jsonify({"error": "Room not found"}), 404
    return jsonify(room_info(room))


socketio.start_background_task(cleanup_empty_rooms)

if __name__ == "__main__":
    log.info("music-sync (flask-socketio, %s) listening on http://%s:%d", MODE, HOST, PORT)
    if MODE == "threading":
        # Werkzeug's development server with threaded=True (what `python server.py` runs);
        # WebSocket works through simple-websocket.
        socketio.run(app, host=HOST, port=PORT, allow_unsafe_werkzeug=True)
    else:
        # eventlet.wsgi.server on an eventlet listener, one process: the same server that
        # `gunicorn --worker-class eventlet -w 1` runs inside its worker.
        socketio.run(app, host=HOST, port=PORT, log_output=bool(os.environ.get("LOG_ACCESS")))
