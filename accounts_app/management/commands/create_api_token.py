"""Print a new API token for a user. Only its hash is stored: this is the only time it shows."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts_app.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for USER and print it once (use as `Authorization: Bearer …`)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label to recognise the token by.")

    def handle(self, *args, username: str, name: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        _, raw = ApiToken.issue(user=user, name=name[:100])
        self.stdout.write(raw)
