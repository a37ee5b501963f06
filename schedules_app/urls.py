from __future__ import annotations

from django.urls import path

from schedules_app import views

urlpatterns = [
    path("", views.schedule_list, name="schedule_list"),
    path("new/", views.schedule_create_view, name="schedule_create"),
    path("preview/", views.schedule_preview, name="schedule_preview"),
    path("<int:schedule_id>/edit/", views.schedule_edit, name="schedule_edit"),
    path("<int:schedule_id>/toggle/", views.schedule_toggle, name="schedule_toggle"),
    path("<int:schedule_id>/delete/", views.schedule_delete_view, name="schedule_delete"),
]
