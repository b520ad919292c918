"""What every front end (control socket, SSIP listener, MQTT next) shares at its door: who may
come in (SO_PEERCRED allow-lists), how many (a cap with a per-uid share), for how long (idle and
slow-sender timeouts), with how much unfinished input (a memory budget), and accept(2) under fd
exhaustion."""
