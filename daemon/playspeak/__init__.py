"""playspeak: text on a Unix socket becomes PlayAI speech on the local sound card."""

__version__ = "0.1.0"
