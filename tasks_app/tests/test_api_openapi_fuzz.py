"""Property test of the whole API, driven by its own OpenAPI document: whatever hypothesis
sends to any operation — odd ids, huge numbers, unicode, NUL bytes, wrong types, broken
JSON — the answer is never a 500, and every refusal carries a readable `detail`."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks_app.tests._api_support import add_lines, make_plugin, make_task

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 25

odd_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(["", " ", "\x00", "ERROR,", "error,LOUD", "-1", "1e9", "99999999999999999999",
                     "%", "_", "'; DROP TABLE x; --", "../../etc", "true", "null", "DEBUG"]),
)  # fmt: skip
odd_int = st.one_of(st.integers(), st.integers(min_value=-(2**70), max_value=2**70))
any_query_value = st.one_of(odd_text, odd_int.map(str), st.booleans().map(str))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture
def world(admin_user_obj, alice, settings, tmp_path):
    settings.PLUGINS_FOLDER = tmp_path
    plugin = make_plugin("hello")
    task = make_task(plugin, alice)
    add_lines(task, [("INFO", "plugin", "hello"), ("ERROR", "fetcher", "boom")])
    client = Client()
    client.force_login(admin_user_obj)
    return {"client": client, "task_id": str(task.id), "plugin_id": plugin.id}


def _operations() -> list[tuple[str, str, dict]]:
    from octopus.api import api

    schema = api.get_openapi_schema()
    ops = []
    for path, item in schema["paths"].items():
        for method, op in item.items():
            ops.append((path, method, op))
    return ops


OPERATIONS = _operations()


def _path_value(name: str, world: dict):
    real = world["task_id"] if name == "task_id" else world["plugin_id"]
    return st.one_of(
        st.just(real), st.just(str(uuid.uuid4())), odd_text.filter(lambda s: "/" not in s)
    )


@pytest.mark.parametrize(
    "path, method, op", OPERATIONS, ids=[f"{m.upper()} {p}" for p, m, _ in OPERATIONS]
)
def test_no_input_makes_the_api_fail_with_a_500(world, path, method, op):
    params = op.get("parameters", [])

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(data=st.data())
    def check(data):
        url = path
        query = {}
        for param in params:
            if param["in"] == "path":
                value = data.draw(_path_value(param["name"], world))
                url = url.replace("{" + param["name"] + "}", quote(value, safe=""))
            elif param["in"] == "query" and data.draw(st.booleans()):
                query[param["name"]] = data.draw(any_query_value)
        client = world["client"]
        if method == "get":
            response = client.get(url, query)
        else:
            body = data.draw(
                st.one_of(
                    st.fixed_dictionaries(
                        {
                            "plugin": st.one_of(st.just(world["plugin_id"]), odd_text),
                            "params": json_values,
                        }
                    ),
                    json_values.map(json.dumps),
                    st.just("{not json"),
                ).map(lambda b: b if isinstance(b, str) else json.dumps(b))
            )
            response = client.generic(method.upper(), url, body, content_type="application/json")
        assert response.status_code < 500, (method, url, query, response.content[:500])
        if response.status_code >= 400:
            if response["Content-Type"].startswith("application/json"):
                assert response.json()["detail"]
            else:
                # Only a path that matches no route (an empty id segment) leaves the API.
                assert response.status_code == 404, (method, url)

    check()


def test_the_openapi_document_and_docs_page_are_served(client):
    schema = client.get("/api/v1/openapi.json").json()
    assert {"/api/v1/tasks", "/api/v1/tasks/{task_id}/logs", "/api/v1/plugins/{plugin_id}/activate",
            "/api/v1/tasks/{task_id}/logs/stats"} <= set(schema["paths"])  # fmt: skip
    assert {"BearerTokenAuth", "SessionCsrfAuth"} <= set(schema["components"]["securitySchemes"])
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert b"openapi.json" in docs.content
