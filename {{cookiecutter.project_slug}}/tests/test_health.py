"""GET /health."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_health_answers_while_the_process_is_up(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
