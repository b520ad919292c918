"""Many rooms over MQTT: the bridge (bridge.py) and its I/O-free core (topics.py)."""
