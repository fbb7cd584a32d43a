# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client factory, retry classification and error messages (no cluster)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import time
import http.server
import json
import threading

import pytest
import urllib3
from kubernetes.client.rest import ApiException

from ansible_collections.localpv.rollout.plugins.module_utils.kube import client as k


def api_error(status, message="", reason="", headers=None):
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "message": message, "reason": reason})
    exc.headers = headers or {}
    return exc


@pytest.mark.parametrize("exc,retry", [
    (api_error(429), True), (api_error(500), True), (api_error(503), True), (api_error(504), True),
    (api_error(400), False), (api_error(401), False), (api_error(403), False), (api_error(404), False),
    (api_error(409), False), (api_error(422), False),
    (urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"), True),
    (urllib3.exceptions.ProtocolError("Connection aborted."), True),
    (ConnectionRefusedError(111, "refused"), True),
    (urllib3.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"), False),
    (ValueError("bug"), False),
])
def test_only_throttling_server_errors_and_timeouts_are_retried(exc, retry):
    assert k.is_retryable(exc) is retry


def test_backoff_grows_is_capped_and_honours_retry_after():
    top = dict(rand=lambda: 1.0)
    assert [k.backoff_delay(a, **top) for a in range(4)] == [0.1, 0.2, 0.4, 0.8]
    assert k.backoff_delay(20, **top) == 5.0
    assert k.backoff_delay(0, server_hint=2.0, rand=lambda: 0.0) == 2.0
    assert k.retry_after(api_error(429, headers={"Retry-After": "3"})) == 3.0


def test_forbidden_names_the_verb_and_the_resource():
    msg = ('persistentvolumes is forbidden: User "system:serviceaccount:t:sa" cannot create resource '
           '"persistentvolumes" in API group "" at the cluster scope')
    err = k.describe_error(api_error(403, msg, "Forbidden"), "create", "persistentvolumes", "local-n-a")
    assert err.status == 403
    assert err.msg.startswith("not allowed to create persistentvolumes (403 Forbidden)")
    assert "localpv-rollout-clusterrole.yaml" in err.msg


def test_wrong_credentials_say_so():
    err = k.describe_error(api_error(401, "Unauthorized", "Unauthorized"), "list", "persistentvolumes",
                           host="https://10.0.0.1:6443")
    assert "rejected the credentials (401 Unauthorized)" in err.msg and "https://10.0.0.1:6443" in err.msg


def send_json(handler, status, answer, headers=None):
    """Answer ``handler``'s request with ``answer`` as compact JSON, as the API server writes."""
    data = json.dumps(answer, separators=(",", ":")).encode()
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class ApiServer:
    """A tiny HTTP server on localhost that answers with what a test queued and
    records each request as it arrived on the wire (method, path and query,
    headers, JSON body)."""

    def __init__(self):
        self.answers, self.seen = [], []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.seen.append({"method": self.command, "path": self.path, "headers": self.headers,
                                    "body": json.loads(body) if body else None})
                send_json(self, *server.answers.pop(0))

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, *_args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def status(self, code, message="", reason="", headers=None):
        self.answers.append((code, {"kind": "Status", "code": code, "message": message, "reason": reason}, headers))

    def ok(self, answer):
        self.answers.append((200, answer, None))


@pytest.fixture
def server():
    api = ApiServer()
    yield api
    api.httpd.shutdown()


def _kube(server, retries=3, **params):
    configuration, headers = k.build_configuration(dict({"host": server.host, "api_key": "t"}, **params))
    slept = []
    return k.Kube(configuration, headers, workers=4, retries=retries, sleep=slept.append), slept


def test_call_retries_throttling_then_returns_the_answer(server):
    kube, slept = _kube(server)
    server.status(429, headers={"Retry-After": "1"})
    server.status(503)
    server.ok({"ok": 1})
    assert kube.call("get", "persistentvolumes", "x", "GET", "/api/v1/persistentvolumes/x") == {"ok": 1}
    assert kube.requests == {"get": 3} and len(slept) == 2 and slept[0] >= 1
    first = server.seen[0]
    assert first["path"] == "/api/v1/persistentvolumes/x"
    assert first["headers"]["Authorization"] == "Bearer t" and first["headers"]["User-Agent"] == "localpv.rollout"


def test_call_gives_up_after_the_retries_with_a_clear_error(server):
    kube, slept = _kube(server, retries=2)
    for _try in range(3):
        server.status(503, "etcd is sad", "ServiceUnavailable")
    with pytest.raises(k.KubeError) as info:
        kube.list_nodes()
    assert info.value.status == 503 and "list nodes failed (503 ServiceUnavailable): etcd is sad" in info.value.msg
    assert kube.requests == {"list": 3}


def test_not_found_is_not_retried(server):
    kube, slept = _kube(server)
    server.status(404, "not found", "NotFound")
    assert kube.get_pv("x") is None
    assert kube.requests == {"get": 1} and slept == []


def test_an_unreachable_server_is_named_after_the_retries():
    configuration, headers = k.build_configuration({"host": "http://127.0.0.1:1", "api_key": "t"})
    slept = []
    kube = k.Kube(configuration, headers, retries=2, sleep=slept.append)
    with pytest.raises(k.KubeError) as info:
        kube.list_pvs()
    assert "cannot reach the API server at http://127.0.0.1:1 for list persistentvolumes" in info.value.msg
    assert kube.requests == {"list": 3} and len(slept) == 2


def test_list_follows_continue_tokens(server):
    kube = _kube(server)[0]
    server.ok({"items": [1, 2], "metadata": {"continue": "a b"}})
    server.ok({"items": [3], "metadata": {"continue": ""}})
    assert kube.list_pvs(label_selector="x=y") == [1, 2, 3]
    assert [seen["path"] for seen in server.seen] == [
        "/api/v1/persistentvolumes?labelSelector=x%%3Dy&limit=%d" % k.PAGE_SIZE,
        "/api/v1/persistentvolumes?labelSelector=x%%3Dy&limit=%d&continue=a+b" % k.PAGE_SIZE]


def _page(items, token):
    return {"kind": "PersistentVolumeList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "9", "continue": token, "remainingItemCount": 1}, "items": items}


def test_the_continue_token_is_read_from_the_head_of_a_page_and_nowhere_else():
    head = json.dumps(_page([{"metadata": {"continue": "no"}}], "t1"), separators=(",", ":")).encode()
    assert k.continue_token(head) == "t1"
    assert k.continue_token(json.dumps(_page([], "")).encode()) is None   # spaces: not the head we read
    assert k.continue_token(b'{"items":[{"kind":"X","apiVersion":"v1","metadata":{"continue":"t"}}]}') is None


def test_a_list_whose_token_expires_while_the_next_page_is_fetched_starts_over_once(server):
    kube = _kube(server)[0]
    server.ok(_page([1, 2], "t1"))
    server.status(410, "the provided continue parameter is too old", "Expired")
    server.ok(_page([1, 2], "t2"))
    server.ok(_page([3], ""))
    assert kube.list_pvs() == [1, 2, 3]
    assert [seen["path"].rsplit("?", 1)[-1].rsplit("&", 1)[-1] for seen in server.seen] == [
        "limit=%d" % k.PAGE_SIZE, "continue=t1", "limit=%d" % k.PAGE_SIZE, "continue=t2"]


def test_writes_name_the_field_manager_and_dry_run_sends_nothing_to_keep(server):
    configuration, headers = k.build_configuration({"host": server.host, "api_key": "t"})
    kube = k.Kube(configuration, headers, dry_run=True)
    server.ok({"metadata": {"name": "pv-a"}})
    server.ok({})
    kube.create_pv({"metadata": {"name": "pv-a"}})
    kube.patch_pv("pv a", {"metadata": {"labels": {"x": "y"}}})
    create, patch = server.seen
    assert create["method"] == "POST" and create["path"] == "/api/v1/persistentvolumes?fieldManager=%s&dryRun=All" \
        % k.FIELD_MANAGER and create["body"] == {"metadata": {"name": "pv-a"}}
    assert patch["method"] == "PATCH" and patch["path"].startswith("/api/v1/persistentvolumes/pv%20a?")
    assert patch["headers"]["Content-Type"] == "application/merge-patch+json"


def test_run_keeps_going_after_a_failure_and_keeps_order(server):
    kube = _kube(server)[0]

    def fail():
        raise k.KubeError("boom", status=500)
    results = kube.run([lambda: 1, fail, lambda: 3])
    assert [result for result, _error in results] == [1, None, 3]
    assert results[1][1].msg == "boom"


def test_run_of_many_jobs_runs_each_once_in_order_with_few_queued(server):
    kube = _kube(server)[0]
    started = []

    def job(n):
        def run():
            started.append(n)
            time.sleep(0.001 * (n % 3))
            return n
        return run
    results = kube.run([job(n) for n in range(500)])
    assert [result for result, _error in results] == list(range(500)) and sorted(started) == list(range(500))


def test_client_is_built_from_a_kubeconfig_by_kubernetes_core(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("""
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://10.1.2.3:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: sekret}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
""")
    configuration, headers = k.build_configuration({"kubeconfig": str(kubeconfig),
                                                    "impersonate_user": "alice"})
    assert configuration.host == "https://10.1.2.3:6443"
    assert "Bearer sekret" in configuration.api_key.values()
    assert headers == {"Impersonate-User": "alice"}


def test_k8s_auth_environment_is_honoured(monkeypatch):
    monkeypatch.setenv("K8S_AUTH_HOST", "https://10.9.9.9:6443")
    monkeypatch.setenv("K8S_AUTH_API_KEY", "tok")
    monkeypatch.setenv("K8S_AUTH_VERIFY_SSL", "no")
    configuration = k.build_configuration({})[0]
    assert configuration.host == "https://10.9.9.9:6443" and configuration.verify_ssl is False


def test_missing_kubeconfig_is_a_clear_error(tmp_path):
    with pytest.raises(k.KubeError) as info:
        k.build_configuration({"kubeconfig": str(tmp_path / "nope")})
    assert "the kubeconfig file %s does not exist" % (tmp_path / "nope") in info.value.msg


def test_module_arg_spec_reuses_kubernetes_core_auth_options():
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
    spec = k.module_arg_spec(extra=dict(type="str"))
    for key, value in AUTH_ARG_SPEC.items():
        assert spec[key] is value
    assert spec["api_key"]["no_log"] is True and "extra" in spec


def test_impersonated_groups_go_out_as_one_header_each(monkeypatch, server):
    monkeypatch.setenv("K8S_AUTH_IMPERSONATE_GROUPS", "ops,storage")
    configuration, headers = k.build_configuration({"host": server.host, "api_key": "t",
                                                    "impersonate_user": "alice"})
    assert headers == {"Impersonate-User": "alice", "Impersonate-Group": ["ops", "storage"]}
    kube = k.Kube(configuration, headers)
    server.ok({"items": []})
    kube.list_nodes()
    sent = server.seen[0]["headers"]
    assert sent.get_all("Impersonate-Group") == ["ops", "storage"] and sent["Impersonate-User"] == "alice"


def test_a_broken_kubeconfig_is_named_in_the_error(tmp_path):
    bad = tmp_path / "config"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    with pytest.raises(k.KubeError) as info:
        k.build_configuration({"kubeconfig": str(bad), "context": "prod"})
    assert "kubeconfig %s (context prod)" % bad in info.value.msg


def test_a_delete_that_finds_nothing_is_done_not_a_failure(server):
    kube, _slept = _kube(server)
    server.status(404, "not found", "NotFound")
    assert kube.delete_pv("pv-a", uid="u1", resource_version="7") is False
    assert server.seen[0]["method"] == "DELETE" and server.seen[0]["path"] == "/api/v1/persistentvolumes/pv-a"
    assert server.seen[0]["body"]["preconditions"] == {"uid": "u1", "resourceVersion": "7"}


class Clock:
    """A clock the test moves: each sleep of the client advances it."""

    def __init__(self):
        self.now = 0.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def _deadline_kube(server, retry_deadline, retries=2):
    configuration, headers = k.build_configuration({"host": server.host, "api_key": "t"})
    clock = Clock()
    kube = k.Kube(configuration, headers, workers=4, retries=retries, sleep=clock.sleep, clock=clock,
                  retry_deadline=retry_deadline)
    return kube, clock


def test_throttling_is_waited_out_past_the_retry_count_until_the_deadline(server):
    kube, clock = _deadline_kube(server, retry_deadline=60, retries=2)
    for _try in range(10):
        server.status(429, "too many requests", "TooManyRequests", headers={"Retry-After": "1"})
    server.ok({"ok": 1})
    assert kube.call("create", "persistentvolumes", "x", "POST", "/api/v1/persistentvolumes", body={}) == {"ok": 1}
    # ten throttled answers, five times the retry count, and the write still landed
    assert kube.throttled == 10 and kube.requests == {"create": 11}
    assert all(delay >= 1 for delay in clock.slept)


def test_throttling_past_the_deadline_fails_and_says_which_knob(server):
    kube, clock = _deadline_kube(server, retry_deadline=5)
    for _try in range(20):
        server.status(429, "too many requests", "TooManyRequests", headers={"Retry-After": "2"})
    with pytest.raises(k.KubeError) as info:
        kube.call("create", "persistentvolumes", "x", "POST", "/api/v1/persistentvolumes", body={})
    assert info.value.status == 429
    assert "after 5 s of retries: raise retry_deadline, or lower workers" in info.value.msg
    assert clock.now <= 5 and kube.requests == {"create": 3}


def test_a_503_without_retry_after_is_a_failure_bounded_by_the_retry_count(server):
    kube, clock = _deadline_kube(server, retry_deadline=600, retries=2)
    for _try in range(3):
        server.status(503, "etcd is sad", "ServiceUnavailable")
    with pytest.raises(k.KubeError):
        kube.list_nodes()
    assert kube.requests == {"list": 3} and kube.throttled == 0


def test_in_flight_halves_once_per_window_and_grows_back():
    clock = Clock()
    gate = k.InFlight(16, window=0.5, clock=clock)
    gate.throttled()
    gate.throttled()                      # the same burst: one cut
    assert int(gate.limit) == 8
    clock.now += 1
    gate.throttled()
    assert int(gate.limit) == 4 and gate.lowest == 4
    for _answer in range(200):           # about one step per round of 4, 5, ... 15 answers
        gate.answered()
    assert gate.limit == 16


class SeatedServer:
    """An HTTP server with ``seats`` concurrent seats that answers 429 with
    Retry-After when they are taken, as API Priority and Fairness does with a
    priority level whose limit response is Reject."""

    def __init__(self, seats):
        self.lock = threading.Lock()
        self.busy = self.most_busy = self.rejected = self.created = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server.lock:
                    taken = server.busy >= seats
                    if taken:
                        server.rejected += 1
                    else:
                        server.busy += 1
                        server.most_busy = max(server.most_busy, server.busy)
                if taken:
                    send_json(self, 429, {"kind": "Status", "code": 429, "reason": "TooManyRequests"},
                              {"Retry-After": "0"})
                    return
                time.sleep(0.01)
                with server.lock:
                    server.busy -= 1
                    server.created += 1
                send_json(self, 201, {"kind": "PersistentVolume"})

            def log_message(self, *_args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_a_full_priority_level_loses_no_write_and_the_client_sends_fewer_at_once():
    seated = SeatedServer(seats=2)
    try:
        configuration, headers = k.build_configuration({"host": seated.host, "api_key": "t"})
        kube = k.Kube(configuration, headers, workers=16, retry_deadline=60)
        jobs = [lambda n=n: kube.create("persistentvolumes", "pv-%d" % n, "/api/v1/persistentvolumes", {})
                for n in range(150)]
        results = kube.run(jobs)
    finally:
        seated.httpd.shutdown()
    assert [error for _result, error in results if error] == []
    assert seated.created == 150 and kube.throttled == seated.rejected > 0
    # the client noticed: it went down from 16 requests in flight
    assert kube.in_flight.lowest < 16


@pytest.mark.parametrize("verb, resource, role", [
    ("create", "persistentvolumes", "localpv-rollout-clusterrole.yaml"),
    ("list", "pods", "localpv-rollout-clusterrole.yaml"),
    ("delete", "persistentvolumeclaims", "localpv-rollout-retire-clusterrole.yaml"),
    ("create", "pods/eviction", "localpv-rollout-retire-clusterrole.yaml"),
    ("patch", "nodes", "localpv-rollout-retire-clusterrole.yaml"),
])
def test_a_403_names_the_clusterrole_file_that_grants_that_right(verb, resource, role):
    err = k.describe_error(api_error(403, "forbidden", "Forbidden"), verb, resource, "x")
    assert "deploy/rbac/" + role in err.msg, err.msg
    other = ({"localpv-rollout-clusterrole.yaml", "localpv-rollout-retire-clusterrole.yaml"} - {role}).pop()
    assert other not in err.msg
