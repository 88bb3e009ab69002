"""The path model's inputs: what can be read about the path's idle timeouts, each value with its provenance.

Core code (standard library only, no import of :mod:`keepalive.checker`): the default policy, the checker, the
runtime check and the audit all build on it. Modules: ``_source`` (:class:`Source`, a value and where it came
from), ``_parse`` (pure text parsers), ``_proc`` (sysctls, conntrack statistics, namespace detection under a proc
root), ``_kubeproxy`` (kube-proxy's configuration), ``_middleboxes`` (presets of well-known middleboxes).
"""
