# Copyright (c) localpv.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's port layout and its site layout for any disk count (no lab needed)."""

import pytest

from conftest import LAB


def test_every_instance_has_its_own_ports_below_the_default_ephemeral_range():
    blocks = [LAB.port_block(i) for i in range(LAB.MAX_INSTANCES)]
    for (first, last), (next_first, _next_last) in zip(blocks, blocks[1:]):
        assert last < next_first
    assert blocks[-1][1] < 32768
    first, last = LAB.port_block(LAB.INSTANCE)
    fixed = [LAB.ETCD_PORT, LAB.ETCD_PEER_PORT, LAB.KCM_PORT, LAB.SCHEDULER_PORT, LAB.KWOK_PORT, LAB.APISERVER_PORT]
    ssh = [LAB.SSH_BASE_PORT + 1, LAB.SSH_BASE_PORT + LAB.MAX_NODES]
    assert len(set(fixed)) == len(fixed) and all(first <= p <= last for p in fixed + ssh)
    assert max(fixed) < ssh[0]


def test_reserved_port_lists_are_read_and_written_as_the_kernel_does():
    assert LAB._parse_ports("20500-20502,31000\n") == {20500, 20501, 20502, 31000}
    assert LAB._format_ports({20500, 20501, 20502, 31000}) == "20500-20502,31000"
    assert LAB._parse_ports("\n") == set() and LAB._format_ports(set()) == ""


def node(*sizes):
    return {"disks": [{"path": "/dev/loop%d" % i, "size": size} for i, size in enumerate(sizes)]}


def test_the_site_layout_shrinks_with_the_disks():
    names = [[d["name"] for d in LAB.site_disks(node(*sizes))] for sizes in
             [(2 ** 30,), (2 ** 30, 600 * 2 ** 20), (2 ** 30, 2 ** 31, 2 ** 29), (2 ** 30,) * 5]]
    assert names == [["ssd0", "vol1"], ["ssd0", "data", "vol1"], ["ssd0", "data", "raw0", "vol1"],
                     ["ssd0", "data", "raw0", "vol1"]]
    # a disk too small for xfs gets ext4
    assert LAB.site_disks(node(200 * 2 ** 20))[0]["fstype"] == "ext4"


@pytest.mark.parametrize("text", ["", ",", "1G,lots", "-1G"])
def test_disk_sizes_must_be_one_or_more_sizes(text):
    with pytest.raises(SystemExit):
        LAB.parse_disk_sizes(text)


def test_disk_sizes():
    assert LAB.parse_disk_sizes("1G, 600M") == ["1G", "600M"]


def test_make_site_knows_its_own_disks_by_the_partition_names_the_site_layout_gives():
    labels = [LAB.site_labels(e) for e in LAB.site_disks(node(2 ** 30, 2 ** 30, 2 ** 29)) if e.get("device")]
    assert labels == [["localpv-ssd0"], ["localpv-data-1", "localpv-data-2"], ["localpv-raw0"]]


def test_the_lab_pki_passes_strict_x509_verification(tmp_path, monkeypatch):
    """Python 3.13 verifies certificates with VERIFY_X509_STRICT by default; a CA without a
    subject key identifier, or a certificate without an authority key identifier, then
    fails the TLS handshake ("Missing Authority Key Identifier")."""
    import socket
    import ssl
    import threading

    monkeypatch.setattr(LAB, "STATE", str(tmp_path))
    LAB.make_pki()
    pki = tmp_path / "pki"
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(pki / "apiserver.crt"), str(pki / "apiserver.key"))
    client = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    client.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(str(pki / "ca.crt"))
    server.verify_flags |= ssl.VERIFY_X509_STRICT
    listener = socket.create_server(("127.0.0.1", 0))
    errors = []

    def serve():
        conn, _addr = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname()) as raw:
            with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"x")
    finally:
        thread.join(10)
        listener.close()
    assert errors == []
