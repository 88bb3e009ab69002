"""One module per client library that gives every connection the client opens a keepalive policy.

Each module imports its client at the top, so import the one you use:

=========================== ======================= ==============================================================
module                      extra                   one line
=========================== ======================= ==============================================================
``adapters.requests``       ``[requests]``          ``session = keepalive.adapters.requests.session()``
``adapters.urllib3``        ``[urllib3]``           ``pool = keepalive.adapters.urllib3.PoolManager()``
``adapters.httpx``          ``[httpx]``             ``httpx.Client(transport=keepalive.adapters.httpx.HTTPTransport())``
``adapters.aiohttp``        ``[aiohttp]``           ``aiohttp.ClientSession(connector=...aiohttp.TCPConnector())``
``adapters.psycopg``        ``[psycopg]``           ``psycopg.connect(dsn, **keepalive.adapters.psycopg.connect_kwargs())``
``adapters.psycopg2``       ``[psycopg2]``          ``psycopg2.connect(dsn, **keepalive.adapters.psycopg2.connect_kwargs())``
``adapters.asyncpg``        ``[asyncpg]``           ``await asyncpg.create_pool(dsn, init=keepalive.adapters.asyncpg.init())``
``adapters.redis``          ``[redis]``             ``redis.Redis(**keepalive.adapters.redis.connection_kwargs())``
``adapters.sqlalchemy``     ``[sqlalchemy]``        ``keepalive.adapters.sqlalchemy.instrument(engine)``
``adapters.pymysql``        ``[pymysql]``           ``keepalive.adapters.pymysql.connect(host=..., ...)``
``adapters.aiomysql``       ``[aiomysql]``          ``await keepalive.adapters.aiomysql.connect(host=..., ...)``
``adapters.aio_pika``       ``[aio-pika]``          ``await keepalive.adapters.aio_pika.connect_robust(url)``
``adapters.pika``           ``[pika]``              ``pika.BlockingConnection(keepalive.adapters.pika.connection_parameters())``
``adapters.nats``           ``[nats]``              ``await keepalive.adapters.nats.connect(servers)``
=========================== ======================= ==============================================================

A missing client raises ImportError naming the extra to install (``pip install 'tcp-keepalive[httpx]'``).
This package itself imports nothing, so ``import keepalive`` never pulls in an optional dependency.
"""
