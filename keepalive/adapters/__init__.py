"""One module per client library that gives every connection the client opens a keepalive policy.

Each module imports its client at the top, so import the one you use (``ka`` is ``keepalive.adapters``):

================ ================ ======================================================================
module           extra            one line
================ ================ ======================================================================
``requests``     ``[requests]``   ``session = ka.requests.session()``
``urllib3``      ``[urllib3]``    ``pool = ka.urllib3.PoolManager()``
``httpx``        ``[httpx]``      ``httpx.Client(transport=ka.httpx.HTTPTransport())``
``aiohttp``      ``[aiohttp]``    ``aiohttp.ClientSession(connector=ka.aiohttp.TCPConnector())``
``psycopg``      ``[psycopg]``    ``psycopg.connect(dsn, **ka.psycopg.connect_kwargs())``
``psycopg2``     ``[psycopg2]``   ``psycopg2.connect(dsn, **ka.psycopg2.connect_kwargs())``
``asyncpg``      ``[asyncpg]``    ``await asyncpg.create_pool(dsn, init=ka.asyncpg.init())``
``redis``        ``[redis]``      ``redis.Redis(**ka.redis.connection_kwargs())``
``sqlalchemy``   ``[sqlalchemy]`` ``ka.sqlalchemy.instrument(engine)``
``pymysql``      ``[pymysql]``    ``ka.pymysql.connect(host=..., ...)``
``aiomysql``     ``[aiomysql]``   ``await ka.aiomysql.connect(host=..., ...)``
``aio_pika``     ``[aio-pika]``   ``await ka.aio_pika.connect_robust(url)``
``pika``         ``[pika]``       ``pika.BlockingConnection(ka.pika.connection_parameters())``
``nats``         ``[nats]``       ``await ka.nats.connect(servers)``
================ ================ ======================================================================

A missing client raises ImportError naming the extra to install (``pip install 'tcp-keepalive[httpx]'``).
This package itself imports nothing, so ``import keepalive`` never pulls in an optional dependency.
"""

__all__: list[str] = []  # the adapters are the submodules; nothing to import from here
