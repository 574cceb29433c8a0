"""Helpers shared by several test modules: building cassettes, provider requests, replay servers, WebSocket sessions, drift runs."""
