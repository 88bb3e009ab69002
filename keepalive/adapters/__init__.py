"""One module per client library that gives every connection the client opens a keepalive policy.

Each module imports its client at the top, so import the one you use::

    import keepalive.adapters.requests
    import keepalive.adapters.urllib3
    import keepalive.adapters.httpx
    import keepalive.adapters.aiohttp

A missing client raises ImportError naming the extra to install (``pip install 'tcp-keepalive[httpx]'``).
This package itself imports nothing, so ``import keepalive`` never pulls in an optional dependency.
"""
