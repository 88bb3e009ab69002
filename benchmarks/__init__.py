"""Benchmarks: what keepalive costs, as ratios measured side by side in one run (`python -m benchmarks`).

Install what they measure with ``pip install -e '.[bench]'`` in a clone; then ``python -m benchmarks --quick``.

Sections (``benchmarks/__main__.py``'s ``SECTIONS``) are functions ``run(size) -> list[Result]`` with ``size`` one
of ``"smoke"`` (tiny, for the test suite), ``"quick"`` and ``"full"``. A section may also live in a module that
is not always there (``benchmarks._sweep``): it exposes ``run(quick: bool) -> list[dict]``
(``quick`` is True for the smoke and quick sizes) and a missing module becomes one "not measured" row. Each dict is
one row of results.json:

* ``name`` (str, required): unique, snake_case, says what is compared (``sweep_round_1000_sockets``).
* ``unit`` (str, required): ``s/<thing>`` for a time per thing (``s/call``, ``s/round``), ``ops/s`` for
  throughput, or a plain unit (``ms``, ``KiB``, ``cpu s``); the Markdown table and the chart read it.
* ``ratio`` (float or None): keepalive / baseline measured side by side in the same run (for ``ops/s``: wrapped /
  plain throughput); ``value`` and ``baseline`` (float or None): the two medians, in ``unit``.
* ``ratio_min``, ``ratio_median``, ``ratio_max`` (floats, optional): the spread of the per-pair ratios the median
  comes from; ``value_min``, ``value_median``, ``value_max`` for rows without a ratio.
* ``measured`` (bool, default True; False with a note starting "not measured: <why>" when it could not run),
  ``goal`` (str or None, e.g. ``"<= 1.15"``, ``">= 0.98"``, ``"<= 5 ms"``), ``note`` (str: how it was measured).
* any other key (JSON values) is kept in results.json as a detail.

A section that raises becomes one "not measured" row with its error; the run goes on.
"""
