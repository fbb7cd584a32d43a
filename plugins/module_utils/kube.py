# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one Kubernetes client of the collection, and the bulk operations on it.

Connection options are kubernetes.core's (``AUTH_ARG_SPEC``, doc fragment
``kubernetes.core.k8s_auth_options``, ``K8S_AUTH_*`` variables, kubeconfig),
and so is the code that turns them into a ``kubernetes.client.Configuration``.
What we do not take from kubernetes.core is its dynamic client: building it
costs a ``/version`` request and API discovery on every run, and the typed
APIs for PersistentVolumes, Nodes, StorageClasses, PVCs and Pods need none.

Bulk work goes through one pooled ``ApiClient`` shared by a bounded pool of
threads; every request is retried with exponential backoff and jitter on 429,
5xx and connection errors/timeouts, and every failure becomes a
:class:`KubeError` whose message names the verb, the resource and the object.
Responses are read as JSON dicts (``_preload_content=False``): turning 10,000
PVs into model objects costs more than fetching them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
except ImportError:  # pragma: no cover - kubernetes.core is a declared dependency
    AUTH_ARG_SPEC = {}

try:
    import kubernetes
    import urllib3
    from kubernetes.client.rest import ApiException
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError as _err:  # pragma: no cover - reported by the modules
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = _err
    ApiException = Exception

RETRY_STATUSES = (429, 500, 502, 503, 504)
DEFAULT_WORKERS = 16
DEFAULT_RETRIES = 6
DEFAULT_TIMEOUT = 60
PAGE_SIZE = 500
FIELD_MANAGER = "localpv.rollout"
DRY_RUN_ALL = "All"

# Options every module of the collection takes besides the auth options.
CLIENT_ARG_SPEC = {
    "workers": {"type": "int", "default": DEFAULT_WORKERS},
    "request_timeout": {"type": "int", "default": DEFAULT_TIMEOUT},
}


class KubeError(Exception):
    """Anything that went wrong talking to the API server, said for a human.

    ``status`` is the HTTP status (None for connection problems), ``verb`` and
    ``resource`` what was attempted (``create``, ``persistentvolumes``),
    ``name`` the object.
    """

    def __init__(self, msg, status=None, verb=None, resource=None, name=None, reason=None):
        super(KubeError, self).__init__(msg)
        self.msg = msg
        self.status = status
        self.verb = verb
        self.resource = resource
        self.name = name
        self.reason = reason

    def to_dict(self):
        return {"msg": self.msg, "status": self.status, "verb": self.verb,
                "resource": self.resource, "name": self.name, "reason": self.reason}


@contextlib.contextmanager
def api_session(module, result=None, dry_run=False, suffix=""):
    """The client of one module run, closed at its end.

    A :class:`KubeError` raised inside fails the module with its message (plus
    ``suffix``), ``error`` (what the error says of itself), ``reason`` (the kind of
    stop, when the error names one), the requests made so far, and ``result``
    updated with what the error says was done already (its ``state``). Modules
    thus report a failure the same way, whatever step it came from.
    """
    kube = None
    try:
        kube = Kube.from_params(module.params, dry_run=dry_run)
        yield kube
    except KubeError as exc:
        failure = dict(result or {})
        failure.update(getattr(exc, "state", None) or {})
        failure["requests"] = kube.requests if kube else {}
        if getattr(exc, "code", None):
            failure["reason"] = exc.code
        module.fail_json(msg=exc.msg + suffix, error=exc.to_dict(), **failure)
    finally:
        if kube:
            kube.close()


def module_arg_spec(**extra):
    """kubernetes.core's auth options plus ours plus ``extra`` (a module's own)."""
    spec = dict(AUTH_ARG_SPEC)
    spec.update(CLIENT_ARG_SPEC)
    spec.update(extra)
    return spec


def _status_body(exc):
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        return json.loads(body) if body else {}
    except ValueError:
        return {"message": body}


def is_retryable(exc):
    """Is ``exc`` worth another try: 429, a 5xx, a timeout or a dropped connection."""
    if isinstance(exc, ApiException) and not isinstance(exc, KubeError):
        return getattr(exc, "status", None) in RETRY_STATUSES
    if HAS_KUBERNETES and isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        # Timeouts, refused/reset connections, protocol errors. A TLS
        # verification failure will not heal by waiting.
        return not isinstance(exc, urllib3.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" not in str(exc)
    return False


def retry_after(exc):
    """Seconds the server asked us to wait (Retry-After header), or None."""
    headers = getattr(exc, "headers", None) or {}
    try:
        value = headers.get("Retry-After") if hasattr(headers, "get") else None
        return min(float(value), 30.0) if value is not None else None
    except (TypeError, ValueError):
        return None


def backoff_delay(attempt, base=0.1, cap=5.0, server_hint=None, rand=random.random):
    """Delay before try number ``attempt + 1``: full jitter over an exponential
    bound, but never less than what the server asked for."""
    bound = min(cap, base * (2 ** attempt))
    delay = bound * rand()
    if server_hint is not None:
        delay = max(delay, server_hint)
    return delay


def describe_error(exc, verb, resource, name=None, host=None):
    """A :class:`KubeError` for a failed ``verb`` on ``resource``/``name``."""
    what = "%s %s%s" % (verb, resource, " " + name if name else "")
    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiException) and getattr(exc, "status", None):
        status = exc.status
        body = _status_body(exc)
        message = body.get("message") or getattr(exc, "reason", "") or ""
        reason = body.get("reason") or getattr(exc, "reason", None)
        if status == 401:
            msg = ("the API server%s rejected the credentials (401 Unauthorized) on %s; check the "
                   "kubeconfig, api_key or client certificate" % (" at " + host if host else "", what))
        elif status == 403:
            msg = ("not allowed to %s %s (403 Forbidden): %s. The ClusterRole shipped in "
                   "deploy/rbac/localpv-rollout-clusterrole.yaml grants what the modules need"
                   % (verb, resource, message))
        else:
            msg = "%s failed (%s %s): %s" % (what, status, reason or "", message)
        return KubeError(msg, status=status, verb=verb, resource=resource, name=name, reason=reason)
    detail = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in detail:
        msg = "TLS verification of the API server%s failed on %s: %s" % (
            " at " + host if host else "", what, detail)
    else:
        msg = "cannot reach the API server%s for %s: %s" % (" at " + host if host else "", what, detail)
    return KubeError(msg, verb=verb, resource=resource, name=name, reason=type(exc).__name__)


def _auth_kwargs(params):
    return dict((k, params.get(k)) for k in AUTH_ARG_SPEC if params.get(k) is not None)


def build_configuration(params):
    """Build ``(configuration, headers)`` from module params, ``K8S_AUTH_*``
    variables and kubeconfig exactly as kubernetes.core's modules do.

    Uses the construction helpers of kubernetes.core's client factory; if a
    future release renames them, falls back to its public ``get_api_client``
    (which then also pays for discovery).
    """
    if not HAS_KUBERNETES:
        raise KubeError("the Python library 'kubernetes' is required: %s" % KUBERNETES_IMPORT_ERROR)
    kwargs = _auth_kwargs(params)
    try:
        from ansible_collections.kubernetes.core.plugins.module_utils.k8s import client as k8s_client
    except ImportError as exc:
        raise KubeError("the collection kubernetes.core is required: %s" % exc)
    try:
        if all(hasattr(k8s_client, f) for f in ("_create_auth_spec", "_create_configuration", "_create_headers")):
            auth = k8s_client._create_auth_spec(None, **kwargs)
            configuration = k8s_client._create_configuration(auth)
            headers = k8s_client._create_headers(None, **kwargs)
        else:  # pragma: no cover - depends on the kubernetes.core release
            client = k8s_client.get_api_client(None, **kwargs)
            configuration = client.configuration
            headers = dict(client.client.client.default_headers)
    except Exception as exc:  # ConfigException, missing files, bad YAML...
        raise KubeError("could not build a Kubernetes client from the connection options: %s" % exc,
                        reason=type(exc).__name__)
    if not configuration.host:
        raise KubeError("no API server given: set host, kubeconfig or K8S_AUTH_* variables")
    return configuration, headers


class Kube:
    """A pooled, retrying client for bulk work on cluster-scoped objects.

    ``dry_run``: every write is sent with ``dryRun=All`` (server-side dry-run:
    validated and admitted by the real API server, persisted nowhere).
    ``requests`` counts the HTTP requests made, by verb, retries included.
    """

    def __init__(self, configuration, headers=None, workers=DEFAULT_WORKERS, retries=DEFAULT_RETRIES,
                 timeout=DEFAULT_TIMEOUT, dry_run=False, sleep=time.sleep):
        self.workers = max(1, int(workers or DEFAULT_WORKERS))
        self.retries = max(0, int(retries))
        self.timeout = (min(10, timeout), timeout)
        self.dry_run = bool(dry_run)
        self.host = configuration.host
        self._sleep = sleep
        self._lock = threading.Lock()
        self.requests = {}
        # One connection per worker, kept alive across requests.
        configuration.connection_pool_maxsize = max(self.workers, configuration.connection_pool_maxsize or 0)
        self.api_client = kubernetes.client.ApiClient(configuration)
        self.api_client.user_agent = "localpv.rollout"
        for header, value in (headers or {}).items():
            if isinstance(value, list):
                try:
                    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import _set_header
                    _set_header(self.api_client, header, value)
                    continue
                except ImportError:  # pragma: no cover
                    value = value[0]
            self.api_client.set_default_header(header, value)
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.storage = kubernetes.client.StorageV1Api(self.api_client)

    @classmethod
    def from_params(cls, params, dry_run=False, **kwargs):
        configuration, headers = build_configuration(params)
        kwargs.setdefault("workers", params.get("workers") or DEFAULT_WORKERS)
        kwargs.setdefault("timeout", params.get("request_timeout") or DEFAULT_TIMEOUT)
        return cls(configuration, headers, dry_run=dry_run, **kwargs)

    def close(self):
        try:
            self.api_client.close()
        except Exception:  # pragma: no cover
            pass

    def _count(self, verb):
        with self._lock:
            self.requests[verb] = self.requests.get(verb, 0) + 1

    def call(self, verb, resource, name, fn, *args, **kwargs):
        """Call typed API method ``fn`` with retries; return the response as a dict.

        Raises :class:`KubeError`. ``verb``/``resource``/``name`` are only used
        for counting and messages.
        """
        kwargs["_preload_content"] = False
        kwargs.setdefault("_request_timeout", self.timeout)
        attempt = 0
        while True:
            self._count(verb)
            try:
                response = fn(*args, **kwargs)
                data = response.data if hasattr(response, "data") else response.read()
                return json.loads(data) if data else {}
            except Exception as exc:  # ApiException, urllib3 and socket errors
                if attempt < self.retries and is_retryable(exc):
                    self._sleep(backoff_delay(attempt, server_hint=retry_after(exc)))
                    attempt += 1
                    continue
                raise describe_error(exc, verb, resource, name, self.host)

    def list(self, resource, fn, label_selector=None, field_selector=None, limit=PAGE_SIZE, **kwargs):
        """All items of a paginated LIST (``limit``/``continue``). If the
        continue token expires mid-way (410), the LIST starts over once, so the
        result is always one consistent snapshot."""
        for restart in (0, 1):
            items, token = [], None
            try:
                while True:
                    page = self.call("list", resource, None, fn, label_selector=label_selector,
                                     field_selector=field_selector, limit=limit, _continue=token, **kwargs)
                    items.extend(page.get("items") or [])
                    token = (page.get("metadata") or {}).get("continue")
                    if not token:
                        return items
            except KubeError as exc:
                if exc.status != 410 or restart:
                    raise

    def run(self, jobs):
        """Run ``jobs`` (callables) on the bounded worker pool.

        Returns ``[(result, error)]`` in the order of ``jobs``; ``error`` is a
        :class:`KubeError` or None. One failure does not stop the others, so
        a caller always knows exactly what was done.
        """
        def wrap(job):
            try:
                return job(), None
            except KubeError as exc:
                return None, exc
        if len(jobs) <= 1 or self.workers == 1:
            return [wrap(job) for job in jobs]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs))) as pool:
            return list(pool.map(wrap, jobs))

    def _write_kwargs(self):
        kwargs = {"field_manager": FIELD_MANAGER}
        if self.dry_run:
            kwargs["dry_run"] = DRY_RUN_ALL
        return kwargs

    # --- PersistentVolumes ---------------------------------------------------

    def list_pvs(self, label_selector=None):
        return self.list("persistentvolumes", self.core.list_persistent_volume, label_selector=label_selector)

    def get_pv(self, name):
        """The PV named ``name``, or None when there is none."""
        try:
            return self.call("get", "persistentvolumes", name, self.core.read_persistent_volume, name)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def create_pv(self, body):
        return self.call("create", "persistentvolumes", body["metadata"]["name"],
                         self.core.create_persistent_volume, body, **self._write_kwargs())

    def patch_pv(self, name, patch):
        return self.call("patch", "persistentvolumes", name, self.core.patch_persistent_volume, name, patch,
                         _content_type="application/merge-patch+json", **self._write_kwargs())

    def delete_pv(self, name, uid=None, resource_version=None):
        """Delete PV ``name``, but only the very object we looked at: with
        ``uid``/``resource_version`` preconditions, a PV that was bound or
        changed since we listed it makes the delete fail (409) instead."""
        preconditions = {}
        if uid:
            preconditions["uid"] = uid
        if resource_version:
            preconditions["resourceVersion"] = resource_version
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions or None}
        if self.dry_run:
            body["dryRun"] = [DRY_RUN_ALL]
        return self.call("delete", "persistentvolumes", name, self.core.delete_persistent_volume, name,
                         body=body)

    def wait_pv_gone(self, name, timeout=60.0, interval=0.2):
        """Wait until PV ``name`` no longer exists (the pv-protection finalizer of
        an unbound PV is removed by the controller shortly after the delete)."""
        deadline = time.monotonic() + timeout
        while True:
            pv = self.get_pv(name)
            if pv is None:
                return
            if time.monotonic() > deadline:
                raise KubeError("PV %s is still there %d seconds after its delete (finalizers: %s)" % (
                    name, timeout, ", ".join((pv.get("metadata") or {}).get("finalizers") or []) or "none"),
                    verb="delete", resource="persistentvolumes", name=name)
            self._sleep(interval)

    # --- Nodes, claims, pods -------------------------------------------------

    def list_nodes(self):
        return self.list("nodes", self.core.list_node)

    def list_pvcs(self, namespace):
        return self.list("persistentvolumeclaims", self.core.list_namespaced_persistent_volume_claim,
                         namespace=namespace)

    def list_pods(self, namespace):
        return self.list("pods", self.core.list_namespaced_pod, namespace=namespace)

    # --- StorageClasses ------------------------------------------------------

    def get_storage_class(self, name):
        try:
            return self.call("get", "storageclasses", name, self.storage.read_storage_class, name)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def create_storage_class(self, body):
        return self.call("create", "storageclasses", body["metadata"]["name"],
                         self.storage.create_storage_class, body, **self._write_kwargs())

    def patch_storage_class(self, name, patch):
        return self.call("patch", "storageclasses", name, self.storage.patch_storage_class, name, patch,
                         _content_type="application/merge-patch+json", **self._write_kwargs())

    def delete_storage_class(self, name, uid=None):
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid} if uid else None}
        if self.dry_run:
            body["dryRun"] = [DRY_RUN_ALL]
        return self.call("delete", "storageclasses", name, self.storage.delete_storage_class, name, body=body)


# --- What the modules do -----------------------------------------------------

def reconcile_local_pvs(kube, volumes, nodes=(), prune=False, replace_unbound=False, hostname_overrides=None):
    """Make the owned PVs of the nodes in scope match ``volumes`` (normalized,
    see ``volumes.normalize_volumes``). The whole of ``local_pv``.

    One paginated LIST of owned PVs and one of Nodes; a plan; if the plan has
    creates, one LIST of all PVs to find foreign PVs in the way. Any conflict
    (foreign PV, immutable change that may not be made) stops the run before
    the first write. Then the writes, concurrently. In dry-run mode the same
    writes go to the API server with ``dryRun=All``.

    Returns a dict: ``actions`` (the plan, with ``error`` set on failed ones),
    ``hostnames``, ``failed`` (True when a conflict or a write failed).
    """
    from ansible_collections.localpv.rollout.plugins.module_utils import volumes as vol

    scope = list(dict.fromkeys(list(nodes or ()) + [v["node"] for v in volumes]))
    owned = kube.list_pvs(label_selector="%s=%s" % (vol.MANAGED_BY_LABEL, vol.MANAGED_BY_VALUE))
    cluster_nodes = kube.list_nodes()
    hostnames = vol.resolve_hostnames(scope, cluster_nodes, owned, hostname_overrides)
    actions = vol.plan_pvs(volumes, hostnames, owned, scope, prune=prune, replace_unbound=replace_unbound)

    creates = [a for a in actions if a["action"] == "create"]
    if creates:
        owned_names = set(a["name"] for a in actions if a.get("existing"))
        foreign = dict((pv["metadata"]["name"], pv) for pv in kube.list_pvs()
                       if pv["metadata"]["name"] not in owned_names)
        for action in creates:
            pv = foreign.get(action["name"])
            if pv is not None and vol.MANAGED_BY_VALUE != (pv["metadata"].get("labels") or {}).get(vol.MANAGED_BY_LABEL):
                action["action"] = "conflict"
                action["claim"] = vol.claim_of(pv)
                action["reason"] = ("a PV named %s exists and is not managed by localpv.rollout (no label %s=%s); "
                                    "it is left alone: remove or rename it, or rename the volume" % (
                                        action["name"], vol.MANAGED_BY_LABEL, vol.MANAGED_BY_VALUE))
    result = {"actions": actions, "hostnames": hostnames, "failed": False}
    if any(a["action"] == "conflict" for a in actions):
        result["failed"] = True
        return result

    def create(action):
        def job():
            try:
                return kube.create_pv(action["manifest"])
            except KubeError as exc:
                if exc.status != 409:
                    raise
                # Created by an earlier try whose answer was lost, or by a
                # concurrent run, or someone else's: look before deciding.
                pv = kube.get_pv(action["name"])
                labels = ((pv or {}).get("metadata") or {}).get("labels") or {}
                if pv and labels.get(vol.MANAGED_BY_LABEL) == vol.MANAGED_BY_VALUE:
                    immutable, patch = vol.compare_pv(action["manifest"], pv)
                    if not immutable and not patch:
                        return pv
                raise KubeError("PV %s appeared while this run was creating it and differs from what is "
                                "wanted; run again" % action["name"] if pv and labels.get(vol.MANAGED_BY_LABEL)
                                else "PV %s already exists and is not managed by localpv.rollout" % action["name"],
                                status=409, verb="create", resource="persistentvolumes", name=action["name"])
        return job

    def patch(action):
        return lambda: kube.patch_pv(action["name"], action["patch"])

    def delete_unbound(action):
        """Delete the PV we listed, only if it is still that PV and still unbound.
        Controllers update a PV's status and finalizers, so a 409 on the
        resourceVersion precondition is looked at again, not taken as final."""
        name, meta = action["name"], action["existing"]["metadata"]
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        for attempt in range(3):
            try:
                return kube.delete_pv(name, uid, version)
            except KubeError as exc:
                if exc.status != 409 or attempt == 2:
                    raise
            pv = kube.get_pv(name)
            if pv is None:
                return None
            if pv["metadata"].get("uid") != uid:
                raise KubeError("PV %s was deleted and made again since it was listed; it is left alone" % name,
                                status=409, verb="delete", resource="persistentvolumes", name=name)
            if vol.claim_of(pv):
                raise KubeError("PV %s was bound to claim %s since it was listed; it is kept" % (
                    name, vol.claim_of(pv)), status=409, verb="delete", resource="persistentvolumes", name=name)
            version = pv["metadata"].get("resourceVersion")

    def delete(action):
        return lambda: delete_unbound(action)

    def replace(action):
        def job():
            delete_unbound(action)
            if kube.dry_run:
                return None
            kube.wait_pv_gone(action["name"])
            return kube.create_pv(action["manifest"])
        return job

    makers = {"create": create, "patch": patch, "delete": delete, "replace": replace}
    todo = [a for a in actions if a["action"] in makers]
    for action, (_res, err) in zip(todo, kube.run([makers[a["action"]](a) for a in todo])):
        if err is not None:
            action["error"] = err.msg
            result["failed"] = True
    return result


def ensure_storage_classes(kube, classes, replace=False):
    """Ensure each StorageClass of ``classes`` (normalized, see
    ``volumes.normalize_storage_class``). Returns a list of results, one per
    class: ``name``, ``action`` (create, patch, replace, unchanged, conflict),
    ``changes``, ``reason``, ``before``, ``after``, ``error``."""
    from ansible_collections.localpv.rollout.plugins.module_utils import volumes as vol

    results = []
    for wanted in classes:
        manifest = vol.storage_class_manifest(wanted)
        name = manifest["metadata"]["name"]
        existing = kube.get_storage_class(name)
        item = {"name": name, "manifest": manifest, "existing": existing, "changes": []}
        if existing is None:
            item["action"] = "create"
        else:
            immutable, patch = vol.compare_storage_class(manifest, existing)
            item["changes"], item["patch"] = immutable, patch
            if immutable and not replace:
                item["action"] = "conflict"
                item["reason"] = ("StorageClass %s has %s different from what is wanted and the API server does not "
                                  "allow changing them; set replace=true to delete and create it (PVs and claims "
                                  "that name the class are not affected)" % (name, ", ".join(immutable)))
            elif immutable:
                item["action"] = "replace"
            elif patch:
                item["action"] = "patch"
            else:
                item["action"] = "unchanged"
        results.append(item)
    if any(r["action"] == "conflict" for r in results):
        return results
    for item in results:
        try:
            if item["action"] == "create":
                kube.create_storage_class(item["manifest"])
            elif item["action"] == "patch":
                kube.patch_storage_class(item["name"], item["patch"])
            elif item["action"] == "replace":
                kube.delete_storage_class(item["name"], item["existing"]["metadata"].get("uid"))
                if not kube.dry_run:
                    kube.create_storage_class(item["manifest"])
        except KubeError as exc:
            item["error"] = exc.msg
            break
    return results


def _controller_of(obj):
    """``Kind/name`` of the controller that owns ``obj`` (its controller ownerReference), or None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return "%s/%s" % (ref.get("kind"), ref.get("name"))
    return None


def local_pv_report(kube, nodes=None, label_selector=None):
    """Owned PVs (of ``nodes``, or all; ``label_selector`` narrows further) with
    phase, claim, the pods that use the claim and where they run, and whether
    their node still exists."""
    from ansible_collections.localpv.rollout.plugins.module_utils import volumes as vol

    selector = "%s=%s" % (vol.MANAGED_BY_LABEL, vol.MANAGED_BY_VALUE)
    if label_selector:
        selector += "," + label_selector
    owned = kube.list_pvs(label_selector=selector)
    if nodes:
        wanted = set(vol.label_value(n) for n in nodes)
        owned = [pv for pv in owned if (pv["metadata"].get("labels") or {}).get(vol.NODE_LABEL) in wanted]
    cluster_nodes = kube.list_nodes()
    node_names = set(n["metadata"]["name"] for n in cluster_nodes)
    hostnames = set((n["metadata"].get("labels") or {}).get(vol.HOSTNAME_LABEL) for n in cluster_nodes)
    namespaces = sorted(set(pv["spec"]["claimRef"].get("namespace") for pv in owned
                            if (pv.get("spec") or {}).get("claimRef")))
    claims, pods_by_claim = {}, {}
    for namespace in namespaces:
        for pvc in kube.list_pvcs(namespace):
            claims["%s/%s" % (namespace, pvc["metadata"]["name"])] = pvc
        for pod in kube.list_pods(namespace):
            for volume in (pod.get("spec") or {}).get("volumes") or []:
                ref = volume.get("persistentVolumeClaim")
                if ref:
                    pods_by_claim.setdefault("%s/%s" % (namespace, ref.get("claimName")), []).append({
                        "namespace": namespace, "name": pod["metadata"]["name"],
                        "node": (pod.get("spec") or {}).get("nodeName"),
                        "phase": (pod.get("status") or {}).get("phase"),
                        "uid": pod["metadata"].get("uid"),
                        "controller": _controller_of(pod),
                        "deleting": bool(pod["metadata"].get("deletionTimestamp"))})
    report = []
    for pv in sorted(owned, key=lambda p: p["metadata"]["name"]):
        view = vol.pv_view(pv)
        labels = view["labels"]
        claim = vol.claim_of(pv)
        pvc = claims.get(claim) if claim else None
        node = labels.get(vol.NODE_LABEL)
        hostname = vol.affinity_hostname(pv)
        report.append({
            "name": view["name"],
            "node": node,
            "volume": labels.get(vol.VOLUME_LABEL),
            "hostname": hostname,
            "node_exists": node in node_names or hostname in hostnames,
            "path": view["local"].get("path"),
            "fstype": view["local"].get("fsType"),
            "stable_id": view["annotations"].get(vol.STABLE_ID_ANNOTATION),
            "volume_mode": view["volumeMode"],
            "capacity": view["capacity"],
            "storage_class": view["storageClassName"],
            "reclaim_policy": view["persistentVolumeReclaimPolicy"],
            "phase": (pv.get("status") or {}).get("phase"),
            "claim": claim,
            "claim_phase": ((pvc or {}).get("status") or {}).get("phase") if claim else None,
            # The claim the PV is bound to, by uid; a claim of the same name with
            # another uid (made again, e.g. by a StatefulSet) is not this PV's claim.
            "claim_uid": ((pv.get("spec") or {}).get("claimRef") or {}).get("uid"),
            "claim_current_uid": ((pvc or {}).get("metadata") or {}).get("uid"),
            "uid": pv["metadata"].get("uid"),
            "pods": pods_by_claim.get(claim, []) if claim else [],
            "deleting": bool(pv["metadata"].get("deletionTimestamp")),
        })
    return report
