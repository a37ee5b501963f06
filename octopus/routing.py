"""WebSocket routes. Apps add their consumers here."""

from __future__ import annotations

from django.urls import path

from tasks_app.consumers import TaskListConsumer, TaskLogConsumer

websocket_urlpatterns: list = [
    path("ws/tasks/<uuid:task_id>/logs/", TaskLogConsumer.as_asgi()),
    path("ws/tasks/", TaskListConsumer.as_asgi()),
]
