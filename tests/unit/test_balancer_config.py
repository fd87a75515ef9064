"""The nginx configuration for Triton replicas: rendered from data, accepted by nginx itself."""

from __future__ import annotations

import pytest

from ppo_server.balancer.cli import main
from ppo_server.balancer.config import BalancerConfig, Method, Replica, render, write
from ppo_server.balancer.nginx import NginxBalancer, find_nginx
from ppo_server.errors import BalancerError

REPLICAS = (Replica("127.0.0.1:8101", "127.0.0.1:8100"), Replica("127.0.0.1:8201", "127.0.0.1:8200"))


def _nginx_or_skip():
    try:
        return find_nginx()
    except BalancerError:
        pytest.skip("nginx not found: apt-get install nginx")


def test_every_replica_is_in_both_upstreams_and_grpc_listens_with_http2():
    text = render(BalancerConfig(REPLICAS, grpc_port=9001, http_port=9000))
    for address in ("127.0.0.1:8101", "127.0.0.1:8201", "127.0.0.1:8100", "127.0.0.1:8200"):
        assert f"server {address};" in text
    assert "listen 127.0.0.1:9001 http2;" in text
    assert "grpc_pass grpc://triton_grpc;" in text
    assert "listen 127.0.0.1:9000;" in text and "proxy_pass http://triton_http;" in text
    assert text.count("least_conn;") == 2


def test_timeouts_and_body_size_follow_the_config():
    text = render(BalancerConfig(REPLICAS, request_timeout_s=900, max_body_mb=0, method=Method.ROUND_ROBIN))
    assert "grpc_read_timeout 900s;" in text and "proxy_read_timeout 900s;" in text
    assert "client_max_body_size 0m;" in text
    assert "least_conn" not in text


def test_files_nginx_writes_stay_relative_to_its_prefix():
    text = render(BalancerConfig(REPLICAS))
    for line in text.splitlines():
        if any(word in line for word in ("pid ", "error_log ", "access_log ", "_temp_path ")):
            assert "/" not in line.split()[1], line


def test_arguments_with_spaces_or_quotes_are_quoted():
    assert write((("proxy_set_header", "Connection", ""),)) == 'proxy_set_header Connection "";'
    assert write((("log_format", "x", 'a "b" c'),)) == 'log_format x "a \\"b\\" c";'


@pytest.mark.parametrize("address", ["8001", "host", "http://host:8001", ":8001"])
def test_a_replica_address_must_be_host_and_port(address):
    with pytest.raises(ValueError, match="host:port"):
        Replica(address, "127.0.0.1:8000")


def test_a_balancer_needs_a_replica():
    with pytest.raises(ValueError, match="at least one replica"):
        BalancerConfig(())


def test_nginx_accepts_the_configuration(tmp_path):
    binary = _nginx_or_skip()
    balancer = NginxBalancer(BalancerConfig(REPLICAS, grpc_port=0, http_port=0), prefix=tmp_path / "nginx", binary=binary)
    balancer.write_config()
    balancer.check_config()  # raises with nginx's words if it refuses


def test_a_refused_configuration_is_reported_with_nginx_words(tmp_path):
    binary = _nginx_or_skip()
    balancer = NginxBalancer(BalancerConfig(REPLICAS, grpc_port=0, http_port=0), prefix=tmp_path / "nginx", binary=binary)
    balancer.write_config()
    (tmp_path / "nginx" / "nginx.conf").write_text("events {}\nhttp { nonsense_directive on; }\n")
    with pytest.raises(BalancerError, match="nonsense_directive"):
        balancer.check_config()


def test_a_missing_nginx_says_how_to_install_it(tmp_path):
    with pytest.raises(BalancerError, match="apt-get install nginx"):
        find_nginx(tmp_path / "nginx")


def test_the_command_prints_the_configuration(capsys):
    code = main(["--replica", "127.0.0.1:8101", "127.0.0.1:8100", "--grpc-port", "9001", "--print-config"])
    assert code == 0
    assert "server 127.0.0.1:8101;" in capsys.readouterr().out


def test_the_command_turns_a_bad_address_into_an_error_message(capsys):
    code = main(["--replica", "8101", "127.0.0.1:8100", "--print-config"])
    assert code != 0
    assert "host:port" in capsys.readouterr().err
