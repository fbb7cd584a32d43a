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
import os
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


# What each connection option of kubernetes.core's AUTH_ARG_SPEC sets on a
# kubernetes.client.Configuration, and the K8S_AUTH_* variables that stand in for
# an option that is not given (both names work, as in kubernetes.core).
_CONFIG_ATTRIBUTE = {
    "host": "host", "api_key": "api_key", "username": "username", "password": "password",
    "validate_certs": "verify_ssl", "ca_cert": "ssl_ca_cert", "client_cert": "cert_file",
    "client_key": "key_file", "proxy": "proxy", "no_proxy": "no_proxy", "proxy_headers": "proxy_headers",
}
_LOAD_OPTIONS = ("kubeconfig", "context", "persist_config")
_BOOL_OPTIONS = ("validate_certs", "persist_config")
_PROXY_HEADER_KEYS = ("proxy_basic_auth", "basic_auth", "user_agent")
_HEADER_OPTIONS = {"impersonate_user": "Impersonate-User", "impersonate_groups": "Impersonate-Group"}


def _env_option(option, env=None):
    env = os.environ if env is None else env
    names = ["K8S_AUTH_" + option.upper()]
    if _CONFIG_ATTRIBUTE.get(option, option) != option:
        names.append("K8S_AUTH_" + _CONFIG_ATTRIBUTE[option].upper())
    for name in names:
        if env.get(name):
            value = env[name]
            if option in _BOOL_OPTIONS:
                return value.lower() not in ("0", "false", "no")
            if option == "impersonate_groups":
                return [g for g in value.split(",") if g]
            return value
    if option == "proxy_headers":
        headers = dict((key, env["K8S_AUTH_PROXY_HEADERS_" + key.upper()]) for key in _PROXY_HEADER_KEYS
                       if env.get("K8S_AUTH_PROXY_HEADERS_" + key.upper()))
        return headers or None
    return None


def auth_options(params, env=None):
    """The connection options of a run: each module parameter, else its K8S_AUTH_* variable."""
    options = {}
    for option in list(_CONFIG_ATTRIBUTE) + list(_LOAD_OPTIONS) + list(_HEADER_OPTIONS):
        value = params.get(option)
        if value is None:
            value = _env_option(option, env)
        if value is not None:
            options[option] = value
    if options.get("host"):
        options["host"] = options["host"].rstrip("/")
    if isinstance(options.get("proxy_headers"), dict):
        options["proxy_headers"] = dict((k, v) for k, v in options["proxy_headers"].items() if v is not None)
    return options


def _self_sufficient(options):
    """Whether the options alone authenticate, so no kubeconfig is read (kubernetes.core's rule)."""
    sets = (("host", "api_key"), ("host", "username", "password"), ("host", "client_cert", "client_key"))
    return any(all(options.get(key) for key in keys) for keys in sets)


def _load_kubeconfig(options, configuration):
    source = options.get("kubeconfig")
    kwargs = {"context": options.get("context"), "client_configuration": configuration,
              "persist_config": bool(options.get("persist_config"))}
    if isinstance(source, dict):
        kubernetes.config.load_kube_config_from_dict(config_dict=source, **kwargs)
    else:
        kubernetes.config.load_kube_config(config_file=source, **kwargs)


def _describe_source(options):
    source = options.get("kubeconfig")
    if isinstance(source, dict):
        what = "the kubeconfig given inline"
    elif source:
        what = "kubeconfig %s" % source
    else:
        what = "the default kubeconfig (KUBECONFIG or ~/.kube/config)"
    return what + (" (context %s)" % options["context"] if options.get("context") else "")


class _RepeatedHeader(str):
    """A header name that may appear more than once in ``default_headers``
    (Impersonate-Group takes one header per group): equal only to itself."""

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other


def connection_source(params):
    """Where the connection comes from, for messages: the kubeconfig path and
    context, or the host given, else kubernetes.core's defaults."""
    parts = []
    for key in ("host", "kubeconfig", "context"):
        value = params.get(key) or os.environ.get("K8S_AUTH_" + key.upper())
        if isinstance(value, str) and value:
            parts.append("%s %s" % (key, value))
    return ", ".join(parts) or "the default kubeconfig (KUBECONFIG or ~/.kube/config)"


def build_configuration(params, env=None):
    """Build ``(configuration, headers)`` from module params, ``K8S_AUTH_*``
    variables and kubeconfig, by the rules kubernetes.core documents for the same
    options: explicit host plus token, basic auth or client certificate need no
    kubeconfig; else the given kubeconfig/context; else in-cluster, then the
    default kubeconfig. Explicit options override what the kubeconfig says.
    """
    if not HAS_KUBERNETES:
        raise KubeError("the Python library 'kubernetes' is required: %s" % KUBERNETES_IMPORT_ERROR)
    options = auth_options(params, env)
    configuration = kubernetes.client.Configuration()
    kubeconfig = options.get("kubeconfig")
    if isinstance(kubeconfig, str) and not os.path.isfile(os.path.expanduser(kubeconfig)):
        raise KubeError("the kubeconfig file %s does not exist: fix the path (option kubeconfig, inventory variable "
                        "localpv_kubeconfig or K8S_AUTH_KUBECONFIG)" % kubeconfig, reason="NoKubeconfig")
    try:
        if _self_sufficient(options):
            pass
        elif options.get("kubeconfig") or options.get("context"):
            _load_kubeconfig(options, configuration)
        else:
            try:
                kubernetes.config.load_incluster_config(client_configuration=configuration)
            except kubernetes.config.ConfigException:
                _load_kubeconfig(options, configuration)
    except Exception as exc:  # ConfigException, missing files, bad YAML...
        raise KubeError("could not build a Kubernetes client from %s: %s" % (_describe_source(options), exc),
                        reason=type(exc).__name__)
    for option, attribute in _CONFIG_ATTRIBUTE.items():
        value = options.get(option)
        if value is None:
            continue
        if option == "api_key":
            value = {"authorization": "Bearer %s" % value}
        elif option == "proxy_headers":
            value = urllib3.util.make_headers(**value)
        setattr(configuration, attribute, value)
    if not configuration.host:
        raise KubeError("no API server given: set host, kubeconfig or K8S_AUTH_* variables")
    headers = dict((header, options[option]) for option, header in _HEADER_OPTIONS.items() if options.get(option))
    return configuration, headers


class Kube:
    """A pooled, retrying client for bulk work.

    ``dry_run``: every write is sent with ``dryRun=All`` (server-side dry-run:
    validated and admitted by the real API server, persisted nowhere).
    ``requests`` counts the HTTP requests made, by verb, retries included.
    Every request of the collection goes through :meth:`call`.
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
            for one in (value if isinstance(value, list) else [value]):
                name = _RepeatedHeader(header) if isinstance(value, list) else header
                self.api_client.set_default_header(name, one)
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
        for counting and messages. ``retry_statuses`` narrows which HTTP statuses
        are tried again (an eviction's 429 is a PodDisruptionBudget's answer,
        not throttling).
        """
        statuses = kwargs.pop("retry_statuses", RETRY_STATUSES)
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
                status = getattr(exc, "status", None) if isinstance(exc, ApiException) else None
                if attempt < self.retries and is_retryable(exc) and (status is None or status in statuses):
                    self._sleep(backoff_delay(attempt, server_hint=retry_after(exc)))
                    attempt += 1
                    continue
                raise describe_error(exc, verb, resource, name, self.host)

    def scan(self, resource, fn, add, start=None, label_selector=None, field_selector=None, limit=PAGE_SIZE,
             **kwargs):
        """Feed every item of a paginated LIST (``limit``/``continue``) to ``add``,
        one page in memory at a time. If the continue token expires mid-way
        (410), ``start()`` is called and the LIST starts over once, so what was
        fed is always one consistent snapshot."""
        for restart in (0, 1):
            token = None
            if start:
                start()
            try:
                while True:
                    page = self.call("list", resource, None, fn, label_selector=label_selector,
                                     field_selector=field_selector, limit=limit, _continue=token, **kwargs)
                    for item in page.get("items") or []:
                        add(item)
                    token = (page.get("metadata") or {}).get("continue")
                    if not token:
                        return
            except KubeError as exc:
                if exc.status != 410 or restart:
                    raise

    def list(self, resource, fn, **kwargs):
        """All items of a paginated LIST, as one list (see :meth:`scan`)."""
        items = []
        self.scan(resource, fn, items.append, start=lambda: items.__setitem__(slice(None), []), **kwargs)
        return items

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

    def _delete_options(self, uid=None, resource_version=None, grace_period=None):
        preconditions = dict((key, value) for key, value in (("uid", uid), ("resourceVersion", resource_version))
                             if value)
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions or None}
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        if self.dry_run:
            body["dryRun"] = [DRY_RUN_ALL]
        return body

    def get(self, resource, name, fn, *args):
        """The object, or None when there is none (404)."""
        try:
            return self.call("get", resource, name, fn, *args)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, resource, name, fn, *args, **options):
        """Delete with preconditions (``uid``, ``resource_version``): the very object
        we looked at, or a 409. Returns True when the API confirmed the delete,
        False when the object was not there (404): a delete whose first answer
        was lost and that was sent again gets exactly that, and it is done."""
        try:
            self.call("delete", resource, name, fn, *args, body=self._delete_options(**options))
            return True
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise

    # --- PersistentVolumes ---------------------------------------------------

    def scan_pvs(self, add, start=None, label_selector=None, limit=PAGE_SIZE):
        self.scan("persistentvolumes", self.core.list_persistent_volume, add, start=start,
                  label_selector=label_selector, limit=limit)

    def list_pvs(self, label_selector=None):
        return self.list("persistentvolumes", self.core.list_persistent_volume, label_selector=label_selector)

    def get_pv(self, name):
        """The PV named ``name``, or None when there is none."""
        return self.get("persistentvolumes", name, self.core.read_persistent_volume, name)

    def create_pv(self, body):
        return self.call("create", "persistentvolumes", body["metadata"]["name"],
                         self.core.create_persistent_volume, body, **self._write_kwargs())

    def patch_pv(self, name, patch, json_patch=False):
        """A JSON merge patch (or, with ``json_patch``, a JSON patch) of PV ``name``.
        A merge patch that carries ``metadata.resourceVersion`` is refused (409)
        when the PV changed since that version."""
        content = "application/json-patch+json" if json_patch else "application/merge-patch+json"
        return self.call("patch", "persistentvolumes", name, self.core.patch_persistent_volume, name, patch,
                         _content_type=content, **self._write_kwargs())

    def delete_pv(self, name, uid=None, resource_version=None):
        """Delete PV ``name``, but only the very object we looked at (see :meth:`delete`)."""
        return self.delete("persistentvolumes", name, self.core.delete_persistent_volume, name,
                           uid=uid, resource_version=resource_version)

    # --- Nodes, claims, pods -------------------------------------------------

    def list_nodes(self):
        return self.list("nodes", self.core.list_node)

    def list_pvcs(self, namespace):
        return self.list("persistentvolumeclaims", self.core.list_namespaced_persistent_volume_claim,
                         namespace=namespace)

    def get_pvc(self, namespace, name):
        return self.get("persistentvolumeclaims", "%s/%s" % (namespace, name),
                        self.core.read_namespaced_persistent_volume_claim, name, namespace)

    def delete_pvc(self, namespace, name, uid=None):
        return self.delete("persistentvolumeclaims", "%s/%s" % (namespace, name),
                           self.core.delete_namespaced_persistent_volume_claim, name, namespace, uid=uid)

    def list_pods(self, namespace):
        return self.list("pods", self.core.list_namespaced_pod, namespace=namespace)

    def delete_pod(self, namespace, name, uid=None, grace_period=None):
        return self.delete("pods", "%s/%s" % (namespace, name), self.core.delete_namespaced_pod, name, namespace,
                           uid=uid, grace_period=grace_period)

    def evict_pod(self, namespace, name, uid=None, grace_period=None):
        """POST an Eviction for the pod. Retried like any request on 5xx and
        timeouts, but not on 429, which is a PodDisruptionBudget saying no:
        raised as a KubeError with status 429 for the caller to wait on."""
        options = {"preconditions": {"uid": uid} if uid else None, "gracePeriodSeconds": grace_period}
        if self.dry_run:
            options["dryRun"] = [DRY_RUN_ALL]
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name, "namespace": namespace}, "deleteOptions": options}
        return self.call("create", "pods/eviction", "%s/%s" % (namespace, name),
                         self.core.create_namespaced_pod_eviction, name, namespace, body,
                         retry_statuses=(502, 503, 504))

    # --- StorageClasses ------------------------------------------------------

    def list_storage_classes(self):
        return self.list("storageclasses", self.storage.list_storage_class)

    def get_storage_class(self, name):
        return self.get("storageclasses", name, self.storage.read_storage_class, name)

    def create_storage_class(self, body):
        return self.call("create", "storageclasses", body["metadata"]["name"],
                         self.storage.create_storage_class, body, **self._write_kwargs())

    def patch_storage_class(self, name, patch):
        return self.call("patch", "storageclasses", name, self.storage.patch_storage_class, name, patch,
                         _content_type="application/merge-patch+json", **self._write_kwargs())

    def delete_storage_class(self, name, uid=None):
        return self.delete("storageclasses", name, self.storage.delete_storage_class, name, uid=uid)
