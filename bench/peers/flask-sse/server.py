"""Peer of seed 2 (tts-proxy SSE server) on Flask, in-memory mode (no Redis).

Written for playsync's benchmarks: the seed's SSE streams and REST positions, as the seed's own
Flask server does them. See ../README.md for what is simplified.

    TTS_PROXY_PORT=5051 TTS_DATA_DIR=./data/tts-cache python server.py

Served by Werkzeug's development server with threaded=True, as `python server.py` does in the
seed: one thread per connection, so every open SSE stream holds a thread.
"""

import json
import logging
import math
import os
import queue
import threading
import time

from flask import Flask, Response, jsonify, request
from flask_cors import CORS

PORT = int(os.environ.get("TTS_PROXY_PORT") or os.environ.get("PORT") or "5051")
HOST = os.environ.get("HOST", "127.0.0.1")
DATA_DIR = os.environ.get("TTS_DATA_DIR", "./data/tts-cache")
KEEPALIVE_SECS = 30
QUEUE_SIZE = 100

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("tts-proxy")
if not os.environ.get("LOG_ACCESS"):
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

os.makedirs(DATA_DIR, exist_ok=True)
PLAYBACK_FILE = os.path.join(DATA_DIR, "playback-position.json")
SCROLL_FILE = os.path.join(DATA_DIR, "scroll-position.json")

app = Flask(__name__)
CORS(app)


class SSEClient:
    __slots__ = ("queue", "alive")

    def __init__(self):
        self.queue = queue.Queue(maxsize=QUEUE_SIZE)
        self.alive = True


class SSEManager:
    """Per-channel lists of clients, each with a bounded queue; a client whose queue is full
    is dropped (its stream ends)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.clients = {"playback": [], "scroll": []}

    def add(self, channel):
        client = SSEClient()
        with self.lock:
            self.clients[channel].append(client)
        return client

    def remove(self, channel, client):
        client.alive = False
        with self.lock:
            if client in self.clients[channel]:
                self.clients[channel].remove(client)

    def broadcast(self, channel, data):
        message = f"event: {channel}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        delivered = 0
        with self.lock:
            for client in list(self.clients[channel]):
                try:
                    client.queue.put_nowait(message)
                    delivered += 1
                except queue.Full:
                    client.alive = False
                    self.clients[channel].remove(client)
                    log.warning("dropped a slow %s client (queue full)", channel)
        return delivered

    def count(self):
        with self.lock:
            return sum(len(c) for c in self.clients.values())


sse = SSEManager()


def load(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save(path, record):
    # A plain overwrite, as the seed does.
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False)


def now_ms():
    return int(time.time() * 1000)


def stream(channel, path):
    client = sse.add(channel)

    def generate():
        try:
            initial = load(path)
            if initial is not None:
                yield f"event: {channel}\ndata: {json.dumps(initial, separators=(',', ':'))}\n\n"
            while client.alive:
                try:
                    yield client.queue.get(timeout=KEEPALIVE_SECS)
                except queue.Empty:
                    yield ": keep-alive\n\n"
        finally:
            sse.remove(channel, client)

    headers = {
        "Cache-Control": "no-cache",
        "Connection": "keep-alive",
        "X-Accel-Buffering": "no",
        "Access-Control-Allow-Origin": "*",
    }
    return Response(generate(), mimetype="text/event-stream", headers=headers)


@app.route("/api/events/playback")
def events_playback():
    return stream("playback", PLAYBACK_FILE)


@app.route("/api/events/scroll")
def events_scroll():
    return stream("scroll", SCROLL_FILE)


@app.route("/api/playback-position", methods=["GET"])
def get_playback():
    record = load(PLAYBACK_FILE)
    if record is None:
        record = {"lastPlayedIndex": -1, "notePath": "", "noteTitle": "", "timestamp": 0, "deviceId": ""}
    return jsonify(record)


@app.route("/api/playback-position", methods=["PUT"])
def put_playback():
    data = request.get_json(silent=True)
    if not data or not isinstance(data, dict):
        return jsonify({"error": "No JSON data provided"}), 400
    index = data.get("lastPlayedIndex")
    if not isinstance(index, int) or isinstance(index, bool):
        return jsonify({"error": "lastPlayedIndex must be an integer"}), 400
    record = {
        "lastPlayedIndex": index,
        "notePath": data.get("notePath", ""),
        "noteTitle": data.get("noteTitle", ""),
        "timestamp": now_ms(),
        "deviceId": data.get("deviceId", "unknown"),
    }
    save(PLAYBACK_FILE, record)
    count = sse.broadcast("playback", record)
    return jsonify({"success": True, "timestamp": record["timestamp"], "broadcastCount": count})


@app.route("/api/scroll-position", methods=["GET"])
def get_scroll():
    record = load(SCROLL_FILE)
    if record is None:
        record = {"scrollTop": 0, "notePath": "", "timestamp": 0, "deviceId": ""}
    return jsonify(record)


@app.route("/api/scroll-position", methods=["PUT"])
def put_scroll():
    data = request.get_json(silent=True)
    if not data or not isinstance(data, dict):
        return jsonify({"error": "No JSON data provided"}), 400
    top = data.get("scrollTop")
    if not isinstance(top, (int, float)) or isinstance(top, bool) or not math.isfinite(top):
        return jsonify({"error": "scrollTop must be a number"}), 400
    record = {
        "scrollTop": int(top),
        "notePath": data.get("notePath", ""),
        "timestamp": now_ms(),
        "deviceId": data.get("deviceId", "unknown"),
    }
    save(SCROLL_FILE, record)
    count = sse.broadcast("scroll", record)
    return jsonify({"success": True, "timestamp": record["timestamp"], "broadcastCount": count})


@app.route("/health")
def health():
    return jsonify({
        "status": "healthy",
        "timestamp": now_ms(),
        "sse_clients": sse.count(),
        "redis_enabled": False,
    })


if __name__ == "__main__":
    log.info("tts-proxy SSE peer listening on http://%s:%d (data: %s)", HOST, PORT, DATA_DIR)
    app.run(host=HOST, port=PORT, threaded=True, debug=False)
