"""Compare live LLM API traffic with recorded shapes: mitmdump -s addons/drift.py (see docs/drift.md)."""
from llmock_proxy.mitm.drift import Drift

addons = [Drift()]
