"""Record LLM API traffic into cassettes: mitmdump -s addons/record.py (see docs/record.md)."""
from llmock_proxy.mitm.record import Record

addons = [Record()]
