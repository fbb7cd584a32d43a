# -*- coding: utf-8 -*-
# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one Kubernetes client of the collection, and the bulk operations on it.

Connection options are kubernetes.core's (``AUTH_ARG_SPEC``, doc fragment
``kubernetes.core.k8s_auth_options``, ``K8S_AUTH_*`` variables, kubeconfig),
and so is the code that turns them into a ``kubernetes.client.Configuration``.
What we do not take from kubernetes.core is its dynamic client: building it
costs a ``/version`` request and API discovery on every run. Nor do we use the
typed API classes (``CoreV1Api``...): importing them loads hundreds of model
classes (about a second on every module run) and each call validates its
arguments again. Requests go out as JSON over the ``ApiClient``'s own connection
pool, which carries the TLS, proxy and certificate settings of the configuration,
with its default headers and its authentication (refreshed tokens included).

Bulk work goes through one pooled ``ApiClient`` shared by a bounded pool of
threads; every request is retried with exponential backoff and jitter on 429,
5xx and connection errors/timeouts, and every failure becomes a
:class:`KubeError` whose message names the verb, the resource and the object.
A server that says "not now" (429, or 503 with Retry-After: API Priority and
Fairness, max-requests-inflight) is waited out until ``retry_deadline``, and
fewer requests are kept in flight while it says so; a server that is broken or
unreachable fails after a few tries, so an operator hears of it at once.
Responses are read as JSON dicts: turning 10,000 PVs into model objects costs
more than fetching them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import gc
import json
import os
import random
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

# KubeError is this module's error (k.KubeError); it lives in common/ so that the
# waiter, which has no client, raises the same family.
from ansible_collections.localpv.rollout.plugins.module_utils.common.errors import KubeError

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
except ImportError:  # pragma: no cover - kubernetes.core is a declared dependency
    AUTH_ARG_SPEC = {}

try:
    from urllib.parse import quote, urlencode
except ImportError:  # pragma: no cover - Python 2 controllers are not supported
    from urllib import quote, urlencode

try:
    import kubernetes
    import urllib3
    from kubernetes.client.api_client import ApiClient
    from kubernetes.client.configuration import Configuration
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
DEFAULT_RETRY_DEADLINE = 300
PAGE_SIZE = 500
FIELD_MANAGER = "localpv.rollout"
DRY_RUN_ALL = "All"

# Options every module of the collection takes besides the auth options.
CLIENT_ARG_SPEC = {
    "workers": {"type": "int", "default": DEFAULT_WORKERS},
    "request_timeout": {"type": "int", "default": DEFAULT_TIMEOUT},
    "retry_deadline": {"type": "int", "default": DEFAULT_RETRY_DEADLINE},
}


# The head of a LIST response as the API server writes it: kind, apiVersion, then
# the list's metadata (a flat object), then the items.
_LIST_HEAD = re.compile(br'\s*\{"kind":"[A-Za-z0-9]+","apiVersion":"[^"]*","metadata":(\{[^{}]*\})')


def continue_token(data):
    """The continue token of a LIST response, read from its first bytes (None when
    there is none or the head is not as expected)."""
    head = _LIST_HEAD.match(data[:4096]) if data else None
    if head is None:
        return None
    try:
        return json.loads(head.group(1)).get("continue") or None
    except ValueError:
        return None


@contextlib.contextmanager
def cycle_collector_paused():
    """Python's cycle collector off for the block, back as it was after it.

    A decoded LIST page is a tree of fresh dicts and lists without cycles, which
    reference counting frees once the page is fed; the cycle collector would only
    walk those objects (and everything the run keeps) again and again while they
    are being made. Measured on a no-op re-run of 10,000 PVs: 0.3 s of the
    module's 2.2 s."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


def is_throttled(exc):
    """Did the server ask us to come back later: a 429, or a 503 with Retry-After
    (what API Priority and Fairness and the inflight limits answer)."""
    status = getattr(exc, "status", None) if isinstance(exc, ApiException) else None
    return status == 429 or (status == 503 and retry_after(exc) is not None)


class InFlight:
    """How many requests may be in flight at once: all the workers while the server
    answers, halved (down to one) when it throttles, and grown back by about one
    per round of successful requests (additive increase, multiplicative decrease,
    as TCP does). One cut per ``window`` seconds: the 429s of one burst are one
    signal, not sixteen."""

    def __init__(self, most, window=0.5, clock=time.monotonic):
        self.most = max(1, int(most))
        self.limit = float(self.most)
        self.window = window
        self.lowest = self.most
        self._clock = clock
        self._cut_at = None
        self._busy = 0
        self._cond = threading.Condition()

    def __enter__(self):
        with self._cond:
            while self._busy >= int(self.limit):
                self._cond.wait()
            self._busy += 1
        return self

    def __exit__(self, *_exc):
        with self._cond:
            self._busy -= 1
            self._cond.notify()

    def answered(self):
        with self._cond:
            if self.limit < self.most:
                self.limit = min(self.most, self.limit + 1.0 / self.limit)
                self._cond.notify_all()

    def throttled(self):
        with self._cond:
            now = self._clock()
            if self._cut_at is None or now - self._cut_at >= self.window:
                self._cut_at = now
                self.limit = max(1.0, self.limit / 2)
                self.lowest = min(self.lowest, int(self.limit))


def backoff_delay(attempt, base=0.1, cap=5.0, server_hint=None, rand=random.random):
    """Delay before try number ``attempt + 1``: full jitter over an exponential
    bound, but never less than what the server asked for."""
    bound = min(cap, base * (2 ** attempt))
    delay = bound * rand()
    if server_hint is not None:
        delay = max(delay, server_hint)
    return delay


# The shipped ClusterRoles (deploy/rbac/): the PV one, and the retire one that
# decommission needs on top of it. A 403 names the file that grants the right.
PV_ROLE = "deploy/rbac/localpv-rollout-clusterrole.yaml"
RETIRE_ROLE = "deploy/rbac/localpv-rollout-retire-clusterrole.yaml"
_RETIRE_RIGHTS = frozenset([
    ("create", "pods/eviction"), ("get", "pods"), ("delete", "pods"), ("get", "persistentvolumeclaims"),
    ("delete", "persistentvolumeclaims"), ("get", "nodes"), ("patch", "nodes"), ("delete", "nodes")])


def role_file_for(verb, resource):
    """The ClusterRole file of deploy/rbac that grants ``verb`` on ``resource``."""
    return RETIRE_ROLE if (verb, resource) in _RETIRE_RIGHTS else PV_ROLE


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
            msg = ("not allowed to %s %s (403 Forbidden): %s. The ClusterRole shipped in %s grants it: apply "
                   "it and bind it to this identity" % (verb, resource, message, role_file_for(verb, resource)))
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


def connection_source(params, env=None):
    """Where the connection comes from, for messages: the host given, or the
    kubeconfig file and context."""
    options = auth_options(params, env)
    if _self_sufficient(options):
        return "host %s" % options["host"]
    return _describe_source(options)


class _RepeatedHeader(str):
    """A header name that may appear more than once in ``default_headers``
    (Impersonate-Group takes one header per group): equal only to itself."""

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other


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
    configuration = Configuration()
    source = options.get("kubeconfig")
    if isinstance(source, str) and not _self_sufficient(options) and not os.path.isfile(os.path.expanduser(source)):
        raise KubeError("the kubeconfig file %s does not exist: fix the path (the kubeconfig option or variable, "
                        "or K8S_AUTH_KUBECONFIG)" % source, reason="NoKubeconfig")
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
    ``requests`` counts the HTTP requests made, by verb, retries included;
    ``throttled`` the answers that asked us to wait. Every request of the
    collection goes through :meth:`call`.

    ``retries`` bounds the tries after a failure that waiting will not cure soon
    (no connection, a timeout, a 5xx without Retry-After); ``retry_deadline``
    (seconds from a request's first try) bounds the waiting after throttling.
    """

    def __init__(self, configuration, headers=None, workers=DEFAULT_WORKERS, retries=DEFAULT_RETRIES,
                 timeout=DEFAULT_TIMEOUT, dry_run=False, sleep=time.sleep, retry_deadline=DEFAULT_RETRY_DEADLINE,
                 clock=time.monotonic):
        self.workers = max(1, int(workers or DEFAULT_WORKERS))
        self.retries = max(0, int(retries))
        self.retry_deadline = max(0, int(retry_deadline if retry_deadline is not None else DEFAULT_RETRY_DEADLINE))
        self.in_flight = InFlight(self.workers)
        self.throttled = 0
        self._clock = clock
        self.timeout = urllib3.Timeout(connect=min(10, timeout), read=timeout)
        self.dry_run = bool(dry_run)
        self.host = configuration.host
        self._sleep = sleep
        self._lock = threading.Lock()
        self.requests = {}
        # One connection per worker, kept alive across requests.
        configuration.connection_pool_maxsize = max(self.workers, configuration.connection_pool_maxsize or 0)
        self.configuration = configuration
        self.api_client = ApiClient(configuration)
        self.api_client.user_agent = "localpv.rollout"
        for header, value in (headers or {}).items():
            for one in (value if isinstance(value, list) else [value]):
                name = _RepeatedHeader(header) if isinstance(value, list) else header
                self.api_client.set_default_header(name, one)

    @classmethod
    def from_params(cls, params, dry_run=False, **kwargs):
        configuration, headers = build_configuration(params)
        kwargs.setdefault("workers", params.get("workers") or DEFAULT_WORKERS)
        kwargs.setdefault("timeout", params.get("request_timeout") or DEFAULT_TIMEOUT)
        kwargs.setdefault("retry_deadline", params.get("retry_deadline"))   # None: the default
        return cls(configuration, headers, dry_run=dry_run, **kwargs)

    def close(self):
        try:
            self.api_client.close()
        except Exception:  # pragma: no cover
            pass

    def _count(self, verb):
        with self._lock:
            self.requests[verb] = self.requests.get(verb, 0) + 1

    def _headers(self, content_type):
        headers = dict(self.api_client.default_headers)
        headers["Accept"] = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        # asked on every request: a token from an exec plugin is refreshed here
        for setting in self.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    def call(self, verb, resource, name, method, path, query=None, body=None,
             content_type="application/json", retry_statuses=RETRY_STATUSES, decode=True):
        """One API request (``method`` on ``path``, ``query`` pairs, a JSON ``body``)
        with retries; returns the response as a dict (its bytes with ``decode=False``).

        Raises :class:`KubeError`. ``verb``/``resource``/``name`` are only used
        for counting and messages. ``retry_statuses`` narrows which HTTP statuses
        are tried again (an eviction's 429 is a PodDisruptionBudget's answer,
        not throttling).
        """
        url = self.host + path
        pairs = [(key, value) for key, value in (query or ()) if value is not None]
        if pairs:
            url += "?" + urlencode(pairs)
        data = json.dumps(body).encode("utf-8") if body is not None else None
        pool = self.api_client.rest_client.pool_manager
        attempt = failures = 0
        give_up_at = self._clock() + self.retry_deadline
        while True:
            self._count(verb)
            try:
                with self.in_flight:
                    response = pool.request(method, url, body=data, headers=self._headers(content_type if data else None),
                                            timeout=self.timeout, retries=False)
                if not 200 <= response.status < 300:
                    raise _api_exception(response)
                self.in_flight.answered()
                if not decode:
                    return response.data
                return json.loads(response.data) if response.data else {}
            except Exception as exc:  # ApiException, urllib3 and socket errors
                status = getattr(exc, "status", None) if isinstance(exc, ApiException) else None
                wanted = is_retryable(exc) and (status is None or status in retry_statuses)
                if wanted and is_throttled(exc):
                    self._note_throttled()
                    delay = backoff_delay(attempt, server_hint=retry_after(exc))
                    if self._clock() + delay <= give_up_at:
                        self._sleep(delay)
                        attempt += 1
                        continue
                    error = describe_error(exc, verb, resource, name, self.host)
                    error.msg += (" (the API server still throttled it after %d s of retries: raise retry_deadline, "
                                  "or lower workers)" % self.retry_deadline)
                    error.args = (error.msg,)
                    raise error
                elif wanted and failures < self.retries:
                    self._sleep(backoff_delay(attempt, server_hint=retry_after(exc)))
                    attempt += 1
                    failures += 1
                    continue
                raise describe_error(exc, verb, resource, name, self.host)

    def _note_throttled(self):
        self.in_flight.throttled()
        with self._lock:
            self.throttled += 1

    def scan(self, resource, path, add, start=None, label_selector=None, field_selector=None, limit=PAGE_SIZE):
        """Feed every item of a paginated LIST (``limit``/``continue``) to ``add``,
        one page in memory at a time. If the continue token expires mid-way
        (410), ``start()`` is called and the LIST starts over once, so what was
        fed is always one consistent snapshot."""
        for restart in (0, 1):
            if start:
                start()
            try:
                with cycle_collector_paused():
                    return self._scan_pages(resource, path, add, [
                        ("labelSelector", label_selector), ("fieldSelector", field_selector), ("limit", limit)])
            except KubeError as exc:
                if exc.status != 410 or restart:
                    raise

    def _scan_pages(self, resource, path, add, query):
        """The pages of one LIST. The next page is asked for while this one is
        decoded and fed: its continue token is read from the head of the page
        (the API server writes the list's metadata before its items) and checked
        against the decoded page, so a page is never skipped or fed twice."""
        def fetch(token):
            return self.call("list", resource, None, "GET", path, query=query + [("continue", token)], decode=False)
        with ThreadPoolExecutor(max_workers=1) as ahead:
            data = fetch(None)
            while True:
                token = continue_token(data)
                following = ahead.submit(fetch, token) if token else None
                page = json.loads(data) if data else {}
                data = None
                real = (page.get("metadata") or {}).get("continue")
                if real != token:   # a head this code cannot read: ask for the right page
                    if following is not None:
                        following.result()
                    following = ahead.submit(fetch, real) if real else None
                for item in page.pop("items", None) or []:
                    add(item)
                if following is None:
                    return None
                data = following.result()

    def list(self, resource, path, **kwargs):
        """All items of a paginated LIST, as one list (see :meth:`scan`)."""
        items = []
        self.scan(resource, path, items.append, start=lambda: items.__setitem__(slice(None), []), **kwargs)
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
        workers = min(self.workers, len(jobs))
        results = [None] * len(jobs)
        # A few jobs per worker in flight, not all of them: 100,000 futures
        # would cost more memory than the writes they stand for.
        pending = {}
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for position, job in enumerate(jobs):
                if len(pending) >= 4 * workers:
                    done, _running = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        results[pending.pop(future)] = future.result()
                pending[pool.submit(wrap, job)] = position
            for future, position in pending.items():
                results[position] = future.result()
        return results

    def _write_query(self):
        query = [("fieldManager", FIELD_MANAGER)]
        if self.dry_run:
            query.append(("dryRun", DRY_RUN_ALL))
        return query

    def _delete_options(self, uid=None, resource_version=None, grace_period=None):
        preconditions = dict((key, value) for key, value in (("uid", uid), ("resourceVersion", resource_version))
                             if value)
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions or None}
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        if self.dry_run:
            body["dryRun"] = [DRY_RUN_ALL]
        return body

    def get(self, resource, name, path):
        """The object, or None when there is none (404)."""
        try:
            return self.call("get", resource, name, "GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, resource, name, path, body):
        return self.call("create", resource, name, "POST", path, query=self._write_query(), body=body)

    def patch(self, resource, name, path, patch, content_type="application/merge-patch+json"):
        return self.call("patch", resource, name, "PATCH", path, query=self._write_query(), body=patch,
                         content_type=content_type)

    def delete(self, resource, name, path, **options):
        """Delete with preconditions (``uid``, ``resource_version``): the very object
        we looked at, or a 409. Returns True when the API confirmed the delete,
        False when the object was not there (404): a delete whose first answer
        was lost and that was sent again gets exactly that, and it is done."""
        try:
            self.call("delete", resource, name, "DELETE", path, body=self._delete_options(**options))
            return True
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise

    # --- PersistentVolumes ---------------------------------------------------

    def scan_pvs(self, add, start=None, label_selector=None, limit=PAGE_SIZE):
        self.scan("persistentvolumes", PVS, add, start=start, label_selector=label_selector, limit=limit)

    def list_pvs(self, label_selector=None):
        return self.list("persistentvolumes", PVS, label_selector=label_selector)

    def get_pv(self, name):
        """The PV named ``name``, or None when there is none."""
        return self.get("persistentvolumes", name, _item(PVS, name))

    def create_pv(self, body):
        return self.create("persistentvolumes", body["metadata"]["name"], PVS, body)

    def patch_pv(self, name, patch, json_patch=False):
        """A JSON merge patch (or, with ``json_patch``, a JSON patch) of PV ``name``.
        A merge patch that carries ``metadata.resourceVersion`` is refused (409)
        when the PV changed since that version."""
        content = "application/json-patch+json" if json_patch else "application/merge-patch+json"
        return self.patch("persistentvolumes", name, _item(PVS, name), patch, content_type=content)

    def delete_pv(self, name, uid=None, resource_version=None):
        """Delete PV ``name``, but only the very object we looked at (see :meth:`delete`)."""
        return self.delete("persistentvolumes", name, _item(PVS, name), uid=uid, resource_version=resource_version)

    # --- Nodes, claims, pods -------------------------------------------------

    def list_nodes(self):
        return self.list("nodes", "/api/v1/nodes")

    def list_pvcs(self, namespace):
        return self.list("persistentvolumeclaims", _namespaced(namespace, "persistentvolumeclaims"))

    def get_pvc(self, namespace, name):
        return self.get("persistentvolumeclaims", "%s/%s" % (namespace, name),
                        _namespaced(namespace, "persistentvolumeclaims", name))

    def delete_pvc(self, namespace, name, uid=None):
        return self.delete("persistentvolumeclaims", "%s/%s" % (namespace, name),
                           _namespaced(namespace, "persistentvolumeclaims", name), uid=uid)

    def list_pods(self, namespace):
        return self.list("pods", _namespaced(namespace, "pods"))

    def delete_pod(self, namespace, name, uid=None, grace_period=None):
        return self.delete("pods", "%s/%s" % (namespace, name), _namespaced(namespace, "pods", name),
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
        return self.call("create", "pods/eviction", "%s/%s" % (namespace, name), "POST",
                         _namespaced(namespace, "pods", name) + "/eviction", body=body,
                         retry_statuses=(502, 503, 504))

    # --- StorageClasses ------------------------------------------------------

    def list_storage_classes(self):
        return self.list("storageclasses", STORAGE_CLASSES)

    def get_storage_class(self, name):
        return self.get("storageclasses", name, _item(STORAGE_CLASSES, name))

    def create_storage_class(self, body):
        return self.create("storageclasses", body["metadata"]["name"], STORAGE_CLASSES, body)

    def patch_storage_class(self, name, patch):
        return self.patch("storageclasses", name, _item(STORAGE_CLASSES, name), patch)

    def delete_storage_class(self, name, uid=None):
        return self.delete("storageclasses", name, _item(STORAGE_CLASSES, name), uid=uid)

    # --- Reviews of this connection's own identity and rights -----------------

    def review_access(self, label, attributes):
        """A SelfSubjectAccessReview of ``attributes`` (its answer as a dict)."""
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes}}
        return self.call("create", "selfsubjectaccessreviews", label, "POST",
                         "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=body)

    def review_self(self):
        """A SelfSubjectReview: who the API server takes this connection for."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        return self.call("create", "selfsubjectreviews", None, "POST",
                         "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=body)


PVS = "/api/v1/persistentvolumes"
STORAGE_CLASSES = "/apis/storage.k8s.io/v1/storageclasses"


def _item(collection, name):
    return "%s/%s" % (collection, quote(name, safe=""))


def _namespaced(namespace, resource, name=None):
    path = "/api/v1/namespaces/%s/%s" % (quote(namespace, safe=""), resource)
    return _item(path, name) if name is not None else path


def _api_exception(response):
    """An ApiException for a response that is not a success, as the typed clients raise it."""
    exc = ApiException(status=response.status, reason=response.reason)
    exc.body = response.data
    exc.headers = response.headers
    return exc
