"""The service skeleton (kezek/web.py, kezek/problems.py): one error shape,
bad input never a 5xx, bodies limited before parsing, outages as 503."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from kezek import refusals
from kezek.problems import DomainError, NotFound, Problem, TooLarge, Unauthenticated
from kezek.trust import PUBLIC
from kezek.web import create_service_app

refusals.catalogue("test-skeleton", {"too_old": "the child is {years} or older"})


class Child(BaseModel):
    pin: str
    age: int


def make_app(engine=None, limit=1024):
    app = create_service_app("demo", max_body_bytes=limit)

    @app.post("/children", dependencies=[PUBLIC])
    def add(child: Child):
        if child.age > 7:
            raise DomainError("too_old", field="age", params={"years": 7})
        return child

    @app.get("/things/{thing}", dependencies=[PUBLIC])
    def thing(thing: str):
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return {"thing": thing}

    return app


def test_a_refusal_is_a_problem_with_its_code_field_and_english_text():
    r = TestClient(make_app()).post("/children", json={"pin": "1", "age": 9})
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == "urn:kezek:problem:too_old" and body["code"] == "too_old"
    assert body["detail"] == "age: the child is 7 or older"
    assert body["errors"] == [{"field": "age", "code": "too_old", "message": "age: the child is 7 or older",
                               "params": {"years": 7}}]


def test_invalid_input_is_a_422_problem_naming_each_field():
    r = TestClient(make_app()).post("/children", json={"pin": 5, "age": "old"})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"pin", "age"} and r.json()["status"] == 422


def test_a_body_over_the_limit_is_413_before_it_is_parsed():
    r = TestClient(make_app(limit=100)).post("/children", content=b'{"pin": "' + b"1" * 500 + b'", "age": 1}',
                                             headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"


def test_a_streamed_body_over_the_limit_is_413_too():
    def chunks():
        for _ in range(10):
            yield b"x" * 50

    r = TestClient(make_app(limit=100)).post("/children", content=chunks(),
                                             headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_control_characters_in_a_path_are_a_400_not_a_500():
    r = TestClient(make_app()).get("/things/a%0Ab")
    assert r.status_code == 400 and r.json()["code"] == "bad_path"


def test_a_database_that_does_not_answer_is_503_with_retry_after(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/missing/dir/db.sqlite")
    r = TestClient(make_app(engine), raise_server_exceptions=False).get("/things/x")
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["code"] == "unavailable"


def test_an_unknown_route_is_a_404_problem():
    r = TestClient(make_app()).get("/nowhere")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_a_legacy_sentence_refusal_keeps_its_text():
    err = DomainError("place already taken", field="place")
    assert err.code == "refused" and err.detail == "place already taken" and err.status_code == 409


def test_every_service_documents_the_problem_responses():
    spec = make_app().openapi()
    assert "ProblemModel" in spec["components"]["schemas"]
    assert "application/problem+json" in spec["paths"]["/children"]["post"]["responses"]["409"]["content"]


def test_an_error_answer_is_documented_under_the_problem_media_type_it_is_sent_with():
    app = make_app()
    for spec in (app.openapi(), app.openapi()):       # the second: from the cache, the same
        answers = spec["paths"]["/children"]["post"]["responses"]
        for status in ("400", "409", "422", "429"):
            assert answers[status]["content"] == {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemModel"}}}
        assert "application/json" in answers["200"]["content"]
    body = TestClient(app).post("/children", json={"pin": "1", "age": 9})
    assert body.headers["content-type"] == "application/problem+json"


def test_a_bug_is_a_500_problem_naming_the_request_id():
    from kezek.web import create_service_app

    app = create_service_app("probe")

    @app.get("/boom", dependencies=[PUBLIC])
    def boom():
        raise RuntimeError("a bug")

    r = TestClient(app, raise_server_exceptions=False).get("/boom", headers={"x-request-id": "req-9"})
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "internal" and "req-9" in r.json()["detail"] and "RuntimeError" not in r.text


def test_a_problem_code_names_one_kind_only():
    with pytest.raises(TypeError, match="'not_found' is NotFound's already"):
        class Lost(Problem, status=404, code="not_found", title="Lost"):
            pass
    assert Problem.kinds["not_found"] is NotFound and Problem.kinds["unauthenticated"] is Unauthenticated


def test_an_error_of_the_framework_has_the_code_and_title_of_its_kind():
    app = make_app(limit=100)

    @app.get("/private", dependencies=[PUBLIC])
    def private():
        raise StarletteHTTPException(401)

    client = TestClient(app)
    wrong_method = client.delete("/children").json()
    assert (wrong_method["status"], wrong_method["code"], wrong_method["title"]) == (
        405, "method_not_allowed", "Method not allowed")
    assert client.get("/private").json()["title"] == Unauthenticated.title
    # The body limit raises its own TooLarge, the framework its 413: one title.
    big = client.post("/children", content=b"x" * 500, headers={"content-type": "application/json"})
    assert big.status_code == 413 and big.json()["title"] == TooLarge.title


def test_the_gateway_titles_a_problem_by_the_kind_of_its_status():
    from services.gateway.errors import problem

    answer = problem(401, [{"field": "session", "code": "unauthenticated", "text": "sign in"}])
    assert json.loads(answer.body)["title"] == Unauthenticated.title
