// Peer of seed 1 (music-sync server) on Node.js + Express + socket.io 4.8.x.
// Written for playsync's benchmarks: the seed's rooms, events and HTTP API, as a typical
// Node implementation would do them. See ../README.md for what is simplified.
//
//   PORT=3000 HOST=127.0.0.1 node server.mjs

import http from "node:http";
import express from "express";
import cors from "cors";
import { Server } from "socket.io";

const PORT = Number(process.env.PORT || 3000);
const HOST = process.env.HOST || "127.0.0.1";
const CLEANUP_MS = 60_000;

const app = express();
app.use(cors());
const server = http.createServer(app);
const io = new Server(server, {
  cors: { origin: "*" },
  maxHttpBufferSize: 64 * 1024,
  transports: ["polling", "websocket"],
});

// room_id -> { id, hostId, users: Set<sid>, createdAt, track, isPlaying, time, lastUpdate }
const rooms = new Map();
// sid -> room_id (the last room the socket created or joined, as in the seed)
const userRooms = new Map();

const has = (v) => v !== undefined && v !== null;

function currentTime(room) {
  if (room.isPlaying) return room.time + (Date.now() - room.lastUpdate) / 1000;
  return room.time;
}

function playState(room) {
  return { current_track: room.track, is_playing: room.isPlaying, current_time: currentTime(room) };
}

function setTime(room, t) {
  room.time = t;
  room.lastUpdate = Date.now();
}

function roomInfo(room) {
  return {
    id: room.id,
    host_id: room.hostId,
    user_count: room.users.size,
    created_at: new Date(room.createdAt).toISOString(),
    ...playState(room),
  };
}

// A host command: the room must exist and the sender must be its host; otherwise ignored.
function hostRoom(socket, data) {
  const room = data && rooms.get(data.room_id);
  if (!room || room.hostId !== socket.id) return null;
  return room;
}

io.on("connection", (socket) => {
  socket.emit("connected", { message: "Connected to music sync server" });

  socket.on("create_room", (data) => {
    const roomId = data && data.room_id;
    if (!has(roomId) || roomId === "") return socket.emit("error", { message: "Room ID is required" });
    if (rooms.has(roomId)) return socket.emit("error", { message: "Room already exists" });
    const now = Date.now();
    const room = {
      id: roomId,
      hostId: socket.id,
      users: new Set([socket.id]),
      createdAt: now,
      track: has(data.track) ? data.track : null,
      isPlaying: true,
      time: has(data.current_time) ? data.current_time : 0,
      lastUpdate: now,
    };
    rooms.set(roomId, room);
    userRooms.set(socket.id, roomId);
    socket.join(roomId);
    socket.emit("room_created", { room_id: roomId, user_count: 1 });
    io.to(roomId).emit("room_users", { count: 1 });
  });

  socket.on("join_room", (data) => {
    const roomId = data && data.room_id;
    if (!has(roomId) || roomId === "") return socket.emit("error", { message: "Room ID is required" });
    const room = rooms.get(roomId);
    if (!room) return socket.emit("error", { message: "Room does not exist" });
    room.users.add(socket.id);
    userRooms.set(socket.id, roomId);
    socket.join(roomId);
    socket.emit("room_joined", { room_id: roomId, user_count: room.users.size, ...playState(room) });
    io.to(roomId).emit("room_users", { count: room.users.size });
    if (room.track) socket.emit("sync_state", playState(room));
  });

  socket.on("track_change", (data) => {
    const room = hostRoom(socket, data);
    if (!room) return;
    room.track = has(data.track) ? data.track : null;
    room.isPlaying = true;
    setTime(room, 0);
    socket.to(room.id).emit("track_change", { track: room.track, current_time: 0 });
  });

  // play / pause / seek / sync_progress: the host sets the time (and for play and pause
  // whether it plays); the other members get the event.
  for (const [event, playing] of [["play", true], ["pause", false], ["seek", null], ["sync_progress", null]]) {
    socket.on(event, (data) => {
      const room = hostRoom(socket, data);
      if (!room) return;
      const t = has(data.current_time) ? data.current_time : currentTime(room);
      if (playing !== null) room.isPlaying = playing;
      setTime(room, t);
      socket.to(room.id).emit(event, { current_time: t });
    });
  }

  socket.on("get_room_state", (data) => {
    const room = data && rooms.get(data.room_id);
    if (!room) return socket.emit("error", { message: "Room does not exist" });
    socket.emit("room_state", { room_id: room.id, user_count: room.users.size, ...playState(room) });
  });

  socket.on("disconnect", () => {
    const roomId = userRooms.get(socket.id);
    userRooms.delete(socket.id);
    const room = has(roomId) ? rooms.get(roomId) : undefined;
    if (!room) return;
    room.users.delete(socket.id);
    if (room.users.size === 0) {
      rooms.delete(roomId);
      return;
    }
    if (room.hostId === socket.id) {
      room.hostId = room.users.values().next().value;
      io.to(room.hostId).emit("become_host", { room_id: roomId });
    }
    io.to(roomId).emit("room_users", { count: room.users.size });
  });
});

setInterval(() => {
  for (const [id, room] of rooms) if (room.users.size === 0) rooms.delete(id);
}, CLEANUP_MS).unref();

app.get("/", (_req, res) => {
  res.json({
    status: "ok",
    message: "Music sync server is running",
    rooms: rooms.size,
    timestamp: new Date().toISOString(),
  });
});

app.get("/rooms", (_req, res) => {
  const list = [...rooms.values()].map(roomInfo);
  res.json({ rooms: list, count: list.length });
});

app.get("/room/:id", (req, res) => {
  const room = rooms.get(req.params.id);
  if (!room) return res.status(404).json({ error: "Room not found" });
  res.json(roomInfo(room));
});

server.listen(PORT, HOST, () => {
  console.log(`music-sync (node socket.io) listening on http://${HOST}:${PORT}`);
});

const shutdown = () => {
  io.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
