"""What the tests and the benchmarks share: real servers on loopback, server subprocesses on a
bound socket, and small OpenAI-shaped stand-in apps and stores.

* :mod:`testkit.servers`: redis-server, a Redis Cluster and uvicorn in a thread, on ports that
  are never raced for.
* :mod:`testkit.processes`: a server subprocess on a socket bound before it starts.
* :mod:`testkit.serve`: ``python -m testkit.serve MODULE:APP --fd N``, uvicorn on that socket.
* :mod:`testkit.openai_app`: OpenAI-shaped endpoints (JSON and SSE) without a model.
* :mod:`testkit.stores`: a store proxy that counts the round trips of each primitive.

Nothing here imports ``tests`` or ``benchmarks``: both import this package.
"""
