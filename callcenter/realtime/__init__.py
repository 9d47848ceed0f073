"""Realtime: Redis pub/sub to websockets (the hub), and the snapshot a console loads first."""
