"""Replay LLM API traffic from cassettes and llmock fixtures: mitmdump -s addons/replay.py (see docs/replay.md)."""
from llmock_proxy.mitm.replay import Replay

addons = [Replay()]
