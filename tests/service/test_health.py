"""/healthz, /readyz and /metrics."""

from __future__ import annotations


def test_healthz_and_readyz(client, app):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    js = client.get("/readyz").get_json()
    assert js == {
        "ready": True,
        "model_id": app.extensions["recsvc"].holder.model.model_id,
        "store": "ok",
        "last_error": None,
    }


def test_metrics_count_requests_latency_fallbacks_and_model(client, app):
    for ch in ("web", "store"):
        client.post("/v1/recommendations", json={"context": {"channel": ch}})
    client.post(
        "/v1/recommendations", json={"customer": {"customer_id": "c00001"}, "context": {"channel": "app"}}
    )
    client.post("/v1/recommendations", json={"context": {"channel": "fax"}})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    mid = app.extensions["recsvc"].holder.model.model_id
    for line in (
        'recsvc_requests_total{channel="web",endpoint="/v1/recommendations",status="200"} 1.0',
        'recsvc_requests_total{channel="store",endpoint="/v1/recommendations",status="200"} 1.0',
        'recsvc_requests_total{channel="-",endpoint="/v1/recommendations",status="422"} 1.0',
        'recsvc_request_duration_seconds_count{channel="app",endpoint="/v1/recommendations"} 1.0',
        'recsvc_fallbacks_total{reason="anonymous"} 2.0',
        'recsvc_recommendations_total{strategy="personalised"} 1.0',
        f'recsvc_model_info{{model_id="{mid}"}} 1.0',
    ):
        assert line in text, line
