from __future__ import annotations

from django.urls import path

from tasks_app import views

urlpatterns = [
    path("", views.task_list, name="task_list"),
    path("<uuid:task_id>/", views.task_detail, name="task_detail"),
    path("<uuid:task_id>/logs/", views.task_logs, name="task_logs"),
    path("<uuid:task_id>/cancel/", views.task_cancel_view, name="task_cancel"),
    path("<uuid:task_id>/rerun/", views.task_rerun, name="task_rerun"),
]
