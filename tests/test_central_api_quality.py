"""API quality: one error body everywhere (404, 405, 422, 500 included), request ids in and
out, health and Prometheus metrics, JSON logs without state content, and a schemathesis run
against the served OpenAPI schema that finds no 5xx."""

from __future__ import annotations

import json
import logging

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from central import logs
from central.api import create_app
from central.settings import CentralSettings
from tests import test_central_protocol as protocol
from tests.test_central_protocol import auth, run_hop, submit

SHAPE = {"code", "message", "detail"}
database_url = protocol.database_url
world = protocol.world


def test_unknown_paths_wrong_methods_and_bad_bodies_share_one_error_shape(world):
    client, _, _, tokens = world
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong = client.delete("/api/v1/trains", headers=auth(tokens["alice"]))
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"
    bad = client.post("/api/v1/trains", content=b"{not json", headers=auth(tokens["alice"]))
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    for response in (missing, wrong, bad):
        assert set(response.json()) == SHAPE


def test_an_unexpected_error_is_a_500_with_code_internal_and_the_traceback_stays_in_the_log(
    world, caplog, monkeypatch
):
    client, _, _, tokens = world
    service = client.app.state.service

    def broken(*_):  # a fault we cannot cause for real: a bug in the service
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "list_trains", broken)
    with caplog.at_level(logging.ERROR, logger="pht.central"):
        response = client.get(
            "/api/v1/trains", headers={**auth(tokens["alice"]), "X-Request-Id": "req-42"}
        )
    assert response.status_code == 500
    assert set(response.json()) == SHAPE and response.json()["code"] == "internal"
    assert "secret internals" not in response.text and "req-42" in response.json()["message"]
    assert response.headers["x-request-id"] == "req-42"
    assert any("secret internals" in (r.exc_text or "") for r in caplog.records) or any(
        r.exc_info for r in caplog.records
    )


def test_request_ids_healthz_metrics_and_openapi(world):
    client, researcher, stations, tokens = world
    given = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.json() == {"status": "ok"} and given.headers["x-request-id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-Id": "bad id\nwith newline"})
    assert made.headers["x-request-id"] != "bad id\nwith newline"
    assert len(made.headers["x-request-id"]) == 32
    submit(client, researcher, stations, tokens["alice"])
    run_hop(client, stations[0], tokens["hospital-a"], b"s0")
    text = client.get("/metrics").text
    assert 'pht_hops{state="done"} 1.0' in text
    assert 'pht_hops{state="queued"} 1.0' in text
    assert 'pht_trains{state="running"} 1.0' in text
    assert "pht_dispatch_latency_seconds_count 1.0" in text
    assert "pht_http_request_seconds_bucket" in text
    schema = client.get("/openapi.json").json()
    assert "/api/v1/hops/next" in schema["paths"]
    assert "/api/v1/admin/parties" in schema["paths"]


def test_logs_are_json_lines_with_the_request_id_and_no_state_content(world, capsys):
    client, researcher, stations, tokens = world
    logs.configure(json_lines=True)
    try:
        submit(client, researcher, stations, tokens["alice"])
        marker = b"PATIENT-MARKER-7731"
        run_hop(client, stations[0], tokens["hospital-a"], marker)
        client.get("/healthz", headers={"X-Request-Id": "trace-me"})
    finally:
        logging.getLogger("pht").handlers.clear()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    requests = [line for line in lines if line["msg"] == "request"]
    assert {"ts", "level", "request_id", "method", "path", "status", "ms"} <= set(requests[0])
    assert any(line["request_id"] == "trace-me" for line in requests)
    assert any(line.get("caller") == "hospital-a" for line in requests)
    everything = json.dumps(lines)
    assert marker.decode() not in everything
    assert "signatures" not in everything and "Bearer" not in everything


@pytest.fixture
def api_schema(tmp_path):
    settings = CentralSettings(data_dir=tmp_path, long_poll_max_s=0.05)
    app = create_app(settings, background=False)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


fuzzed = schemathesis.pytest.from_fixture("api_schema")


@fuzzed.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_request_the_schema_allows_makes_central_fail(case):
    """Every operation, with a token of the role it needs, random valid-shaped input."""
    app = case.operation.schema.app
    service = app.state.service
    tokens = getattr(app.state, "fuzz_tokens", None)
    if tokens is None:
        from trains.keys import Identity

        tokens = {
            "researcher": service.register("researcher", Identity.generate("fuzz-r").public),
            "station": service.register("station", Identity.generate("fuzz-s").public),
            "admin": service.identities.register("admin", "fuzz-a"),
        }
        app.state.fuzz_tokens = tokens
    path = case.operation.path
    role = "admin" if "/admin" in path else "station" if "/hops" in path else "researcher"
    response = case.call(headers=auth(tokens[role]))
    assert response.status_code < 500, (case.method, path, response.text)
    if response.status_code >= 400:
        assert set(response.json()) == SHAPE, response.text
