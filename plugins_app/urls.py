from __future__ import annotations

from django.urls import path

from plugins_app import views

urlpatterns = [
    path("", views.plugin_list, name="plugin_list"),
    path("<str:plugin_id>/", views.plugin_detail, name="plugin_detail"),
]
