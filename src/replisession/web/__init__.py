"""Adapters and nothing else: cookie codec, valve, ASGI, WSGI and Flask glue."""
