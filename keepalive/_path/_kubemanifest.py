"""kube-proxy in a workload manifest (DaemonSet, Pod, Deployment): its container's command line and where the
``--config`` file it names comes from (a ConfigMap volume, a hostPath volume). Pure functions over loaded
documents; nothing here reads a file or raises for bad input.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from keepalive._path._kubeconfig import get, kind_of
from keepalive._path._kubeflags import kube_proxy_argv

__all__ = ["ConfigLocation", "Container", "find_container", "locate_config"]

WORKLOADS: Final = frozenset({"pod", "daemonset", "deployment", "statefulset", "replicaset"})


@dataclass(frozen=True, slots=True)
class Container:
    """The kube-proxy container of a workload: ``flags`` (the words after the program), and what it came from."""

    label: str
    flags: list[str]
    spec: Mapping[str, Any]
    container: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ConfigLocation:
    """Where a ``--config`` path comes from: ``configmap`` (``name``, ``key``), ``hostpath`` (``path``) or
    ``unknown`` (``reason``)."""

    kind: str
    name: str = ""
    key: str = ""
    path: str = ""
    reason: str = ""


def _pod_spec(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    kind = kind_of(doc)
    spec = get(doc, "spec")
    if kind != "pod":
        spec = get(get(spec, "template"), "spec")
    return spec if isinstance(spec, Mapping) else None


def _strings(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


_VAR: Final = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def _expand(words: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """Kubernetes' ``$(VAR)`` expansion of command and args (``$$`` is a literal ``$``; unknown names stay)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return [_VAR.sub(one, word) for word in words]


def find_container(doc: object) -> Container | None:
    """The container of a workload document that runs kube-proxy, or None."""
    if not isinstance(doc, Mapping) or kind_of(doc) not in WORKLOADS:
        return None
    spec = _pod_spec(doc)
    containers = get(spec, "containers")
    if not isinstance(containers, list):
        return None
    meta = get(doc, "metadata")
    where = f"{get(doc, 'kind')} {get(meta, 'namespace') or 'default'}/{get(meta, 'name') or '?'}"
    for container in containers:
        if not isinstance(container, Mapping) or spec is None:
            continue
        env = {
            str(get(item, "name")): str(get(item, "value"))
            for item in (get(container, "env") or [])
            if isinstance(item, Mapping) and isinstance(get(item, "value"), str | int | float)
        }
        command = _expand(_strings(get(container, "command")), env)
        args = _expand(_strings(get(container, "args")), env)
        label = f"{where} container {get(container, 'name') or '?'}"
        flags = kube_proxy_argv(command + args)
        if flags is not None:
            return Container(label, flags, spec, container)
        image = str(get(container, "image") or "")
        if not command and ("kube-proxy" in image or get(container, "name") == "kube-proxy"):
            return Container(label + " (the image's entrypoint: kube-proxy)", args, spec, container)
    return None


def locate_config(found: Container, path: str) -> ConfigLocation:
    """Which volume of the pod holds ``path`` (a ``--config`` value inside the container)."""
    best: tuple[str, str, str] | None = None
    for mount in get(found.container, "volumeMounts") or []:
        mount_path = str(get(mount, "mountPath") or "")
        if not mount_path:
            continue
        root = mount_path.rstrip("/") or "/"
        if path == root or path.startswith(root.rstrip("/") + "/"):
            sub = str(get(mount, "subPath") or "")
            rest = posixpath.relpath(path, root) if path != root else ""
            rest = posixpath.join(sub, rest) if sub else rest
            if best is None or len(root) > len(best[1]):
                best = (str(get(mount, "name")), root, rest)
    if best is None:
        return ConfigLocation("unknown", reason=f"no volume of the pod is mounted at {path}")
    volume_name, _root, rest = best
    volume = next(
        (v for v in get(found.spec, "volumes") or [] if isinstance(v, Mapping) and get(v, "name") == volume_name),
        None,
    )
    config_map = get(volume, "configMap")
    if isinstance(config_map, Mapping):
        key = rest.partition("/")[0] if rest else ""
        for item in get(config_map, "items") or []:  # items: [{key, path}] renames keys to file names
            if isinstance(item, Mapping) and get(item, "path") == rest:
                key = str(get(item, "key"))
        return ConfigLocation("configmap", name=str(get(config_map, "name") or ""), key=key)
    host_path = get(get(volume, "hostPath"), "path")
    if isinstance(host_path, str) and host_path:
        return ConfigLocation("hostpath", path=posixpath.join(host_path, rest) if rest else host_path)
    return ConfigLocation("unknown", reason=f"volume {volume_name!r} is neither a configMap nor a hostPath")


def config_map_text(docs: Sequence[object], location: ConfigLocation) -> str | None:
    """The ConfigMap ``data`` value that ``location`` names, when that ConfigMap is among ``docs``."""
    for doc in docs:
        if kind_of(doc) != "configmap" or get(get(doc, "metadata"), "name") != location.name:
            continue
        value = get(get(doc, "data"), location.key) if location.key else None
        if isinstance(value, str):
            return value
    return None
