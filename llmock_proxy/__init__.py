"""llmock-proxy: record and replay LLM API traffic through mitmproxy."""

__version__ = "0.1.0"
