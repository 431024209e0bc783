"""The performance harness: ASGI apps under uvicorn on loopback, driven by a load generator."""
