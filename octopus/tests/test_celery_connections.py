"""What a worker does with its database connection around each task (octopus/celery.py):
keep a good one, drop one that is too old or broken — as Django does around a request."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from octopus.celery import _recycle_database_connections

pytestmark = pytest.mark.django_db(transaction=True)


def open_connection():
    connection.ensure_connection()
    return connection.connection


def test_a_good_connection_within_conn_max_age_is_kept_for_the_next_task():
    raw = open_connection()
    connection.close_at = time.monotonic() + 60  # as CONN_MAX_AGE=60, the default
    _recycle_database_connections()
    assert connection.connection is raw


def test_a_connection_older_than_conn_max_age_is_closed():
    open_connection()
    connection.close_at = time.monotonic() - 1
    _recycle_database_connections()
    assert connection.connection is None


def test_a_connection_left_inside_a_transaction_is_closed():
    open_connection()
    connection.set_autocommit(False)
    _recycle_database_connections()
    assert connection.connection is None
    connection.set_autocommit(True)
