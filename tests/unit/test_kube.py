# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client factory, retry classification and error messages (no cluster)."""

import json

import pytest
import urllib3
from kubernetes.client.rest import ApiException

from ansible_collections.localpv.rollout.plugins.module_utils import kube as k


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


def _kube(retries=3):
    configuration, headers = k.build_configuration({"host": "https://127.0.0.1:1", "api_key": "t"})
    slept = []
    return k.Kube(configuration, headers, workers=4, retries=retries, sleep=slept.append), slept


class Response:
    def __init__(self, data):
        self.data = json.dumps(data).encode()


def test_call_retries_throttling_then_returns_the_answer():
    kube, slept = _kube()
    answers = [api_error(429), api_error(503), Response({"ok": 1})]

    def fn(**_kw):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    assert kube.call("get", "persistentvolumes", "x", fn) == {"ok": 1}
    assert kube.requests == {"get": 3} and len(slept) == 2


def test_call_gives_up_after_the_retries_with_a_clear_error():
    kube, slept = _kube(retries=2)

    def fn(**_kw):
        raise api_error(503, "etcd is sad", "ServiceUnavailable")
    with pytest.raises(k.KubeError) as info:
        kube.call("list", "nodes", None, fn)
    assert info.value.status == 503 and "list nodes failed (503 ServiceUnavailable): etcd is sad" in info.value.msg
    assert kube.requests == {"list": 3}


def test_not_found_is_not_retried():
    kube, slept = _kube()

    def fn(**_kw):
        raise api_error(404, "not found", "NotFound")
    with pytest.raises(k.KubeError):
        kube.call("get", "persistentvolumes", "x", fn)
    assert kube.requests == {"get": 1} and slept == []


def test_list_follows_continue_tokens():
    kube = _kube()[0]
    pages = {None: {"items": [1, 2], "metadata": {"continue": "a"}},
             "a": {"items": [3], "metadata": {"continue": ""}}}
    seen = []

    def fn(_continue=None, limit=None, **_kw):
        seen.append((_continue, limit))
        return Response(pages[_continue])
    assert kube.list("persistentvolumes", fn) == [1, 2, 3]
    assert seen == [(None, k.PAGE_SIZE), ("a", k.PAGE_SIZE)]


def test_run_keeps_going_after_a_failure_and_keeps_order():
    kube = _kube()[0]

    def fail():
        raise k.KubeError("boom", status=500)
    results = kube.run([lambda: 1, fail, lambda: 3])
    assert [result for result, _error in results] == [1, None, 3]
    assert results[1][1].msg == "boom"


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


def test_a_kubeconfig_that_does_not_parse_is_named_with_its_context(tmp_path):
    bad = tmp_path / "kubeconfig"
    bad.write_text("just a string\n")
    with pytest.raises(k.KubeError) as info:
        k.build_configuration({"kubeconfig": str(bad), "context": "prod"})
    assert "kubeconfig %s (context prod)" % bad in info.value.msg


def test_module_arg_spec_reuses_kubernetes_core_auth_options():
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
    spec = k.module_arg_spec(extra=dict(type="str"))
    for key, value in AUTH_ARG_SPEC.items():
        assert spec[key] is value
    assert spec["api_key"]["no_log"] is True and "extra" in spec


def test_impersonated_groups_go_out_as_one_header_each(monkeypatch):
    monkeypatch.setenv("K8S_AUTH_IMPERSONATE_GROUPS", "ops,storage")
    configuration, headers = k.build_configuration({"host": "https://10.0.0.1:6443", "api_key": "t",
                                                    "impersonate_user": "alice"})
    assert headers == {"Impersonate-User": "alice", "Impersonate-Group": ["ops", "storage"]}
    kube = k.Kube(configuration, headers)
    sent = [(str(name), value) for name, value in kube.api_client.default_headers.items()]
    assert ("Impersonate-Group", "ops") in sent and ("Impersonate-Group", "storage") in sent
    assert ("Impersonate-User", "alice") in sent


def test_a_broken_kubeconfig_is_named_in_the_error(tmp_path):
    bad = tmp_path / "config"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    with pytest.raises(k.KubeError) as info:
        k.build_configuration({"kubeconfig": str(bad), "context": "prod"})
    assert "kubeconfig %s (context prod)" % bad in info.value.msg


def test_a_delete_that_finds_nothing_is_done_not_a_failure():
    kube, _slept = _kube()
    calls = []

    def gone(*args, **kwargs):
        calls.append(kwargs["body"])
        raise api_error(404, "not found", "NotFound")
    assert kube.delete("persistentvolumes", "pv-a", gone, "pv-a", uid="u1", resource_version="7") is False
    assert calls[0]["preconditions"] == {"uid": "u1", "resourceVersion": "7"}
